-- The platform store of one service, created in that service's own schema (the adapter sets
-- search_path). Semantics: services/platform/src/store/memory.rs; adapter:
-- services/adapters/src/postgres.rs.

-- Versioned JSON records. Keys compare byte-wise (COLLATE "C"), like the in-memory store's
-- BTreeMap, so list_active returns the same order in both.
CREATE TABLE records (
    tbl     text COLLATE "C" NOT NULL,
    key     text COLLATE "C" NOT NULL,
    version bigint           NOT NULL CHECK (version > 0),
    body    jsonb            NOT NULL,
    active  boolean          NOT NULL,
    PRIMARY KEY (tbl, key)
);

-- Unfinished work (e.g. orders whose saga still runs), scanned by list_active.
CREATE INDEX records_active ON records (tbl, key) WHERE active;

-- The transactional outbox, drained by the relay in id order.
CREATE TABLE outbox (
    id         bigserial   PRIMARY KEY,
    event_id   text        NOT NULL UNIQUE,
    topic      text        NOT NULL,
    key        text        NOT NULL,
    payload    jsonb       NOT NULL,
    -- [[name, value], ...] in the order given.
    headers    jsonb       NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Set once the event log acknowledged the row; rows are kept for audit.
    sent_at    timestamptz
);

CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;

-- Events each consumer has processed; the primary key makes the effect happen once.
CREATE TABLE inbox (
    consumer     text        NOT NULL,
    event_id     text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
