-- When the order was placed (ms since the epoch), for the whole saga's duration. Orders made
-- before it was kept have 0 (their duration is not observed).
ALTER TABLE orders
    ADD COLUMN created_ms bigint NOT NULL DEFAULT 0 CHECK (created_ms >= 0);
