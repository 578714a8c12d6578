-- Each service keeps its own typed tables (migrations/<service>/, versions 100 and up); the
-- platform keeps what every store shares (services/platform/src/ports/store.rs). Several
-- instances of a service share its store: work items are claimed by one instance at a time
-- (held while the instance's liveness lease runs, fenced by a token), a singleton job (the
-- outbox relay) holds a named lease, and processed rows are cleaned up after a retention.

-- The generic records of the first version gave way to typed tables per service. Their data
-- is not carried over: a schema that holds any refuses to migrate, rather than lose it.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM records) THEN
        RAISE EXCEPTION 'schema % still holds generic records from the first store version; '
            'drain it (finish every order) and drop the schema, or move its data by hand',
            current_schema();
    END IF;
END $$;
DROP TABLE records;

-- Work items (e.g. orders whose saga still runs), written with the service's rows. The
-- fencing token changes only when the claim passes to another owner.
CREATE TABLE work (
    kind        text   COLLATE "C" NOT NULL,
    key         text   COLLATE "C" NOT NULL,
    active      boolean NOT NULL,
    claim_owner text,
    claim_token bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, key)
);

CREATE INDEX work_active ON work (kind, key) WHERE active;
CREATE INDEX work_claimed ON work (kind, claim_owner, key) WHERE active;

-- Named leases: singleton jobs and each instance's liveness.
CREATE TABLE leases (
    name  text        PRIMARY KEY,
    owner text        NOT NULL,
    token bigint      NOT NULL CHECK (token > 0),
    until timestamptz NOT NULL
);

-- Cleanup scans sent rows and inbox marks by age.
CREATE INDEX outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX inbox_processed ON inbox (processed_at);
