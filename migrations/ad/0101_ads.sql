-- The ad service's tables (services/ad/src/store.rs).
CREATE TABLE ads (
    ad_id       text     PRIMARY KEY CHECK (char_length(ad_id) BETWEEN 1 AND 64),
    owner_id    text     NOT NULL CHECK (char_length(owner_id) BETWEEN 1 AND 64),
    title       text     NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    description text     NOT NULL CHECK (char_length(description) <= 5000),
    price_minor bigint   NOT NULL CHECK (price_minor > 0),
    currency    text     NOT NULL CHECK (char_length(currency) = 3),
    category    text     NOT NULL CHECK (char_length(category) BETWEEN 1 AND 64),
    region      text     NOT NULL CHECK (char_length(region) BETWEEN 1 AND 64),
    photos      text[]   NOT NULL CHECK (cardinality(photos) <= 10),
    status      text     NOT NULL CHECK (status IN ('ACTIVE', 'HIDDEN', 'BANNED', 'DELETED')),
    created_ms  bigint   NOT NULL,
    updated_ms  bigint   NOT NULL,
    version     bigint   NOT NULL CHECK (version > 0)
);
CREATE INDEX ads_owner ON ads (owner_id);

-- Create requests: a retried create (same idempotency key) finds the ad it made.
CREATE TABLE ad_requests (
    request_key text PRIMARY KEY CHECK (char_length(request_key) BETWEEN 1 AND 200),
    ad_id       text NOT NULL REFERENCES ads (ad_id)
);
