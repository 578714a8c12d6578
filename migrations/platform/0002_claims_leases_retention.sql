-- Several instances of a service share its store (services/platform/src/ports/store.rs):
-- active records are claimed by one instance at a time (a lease with a fencing token), a
-- singleton job (the outbox relay) holds a named lease, and processed rows are cleaned up
-- after a retention.

-- The claim on an active record: who drives it and the fencing token, which
-- changes only when the claim passes to another owner.
ALTER TABLE records
    ADD COLUMN claim_owner text,
    ADD COLUMN claim_token bigint NOT NULL DEFAULT 0;

-- Named leases of singleton jobs.
CREATE TABLE leases (
    name   text        PRIMARY KEY,
    owner  text        NOT NULL,
    token  bigint      NOT NULL CHECK (token > 0),
    until  timestamptz NOT NULL
);

-- Cleanup scans sent rows by age and inbox marks by age.
CREATE INDEX outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX inbox_processed ON inbox (processed_at);

-- claim_active lists an owner's claims.
CREATE INDEX records_claimed ON records (tbl, claim_owner, key) WHERE active;
