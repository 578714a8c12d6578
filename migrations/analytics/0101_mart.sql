-- The analytics mart (services/analytics/src/store.rs): one counter per key.
CREATE TABLE mart (
    key   text   PRIMARY KEY CHECK (key ~ '^(status|revenue):[A-Z_]{1,32}$'),
    value bigint NOT NULL
);
