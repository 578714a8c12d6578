-- The kv schema of the store conformance suite (services/platform/src/store/kv.rs): versioned
-- JSON values by (table, key). Keys compare byte-wise, like the model's BTreeMap.
CREATE TABLE kv (
    tbl     text  COLLATE "C" NOT NULL,
    key     text  COLLATE "C" NOT NULL,
    version bigint NOT NULL CHECK (version > 0),
    body    jsonb NOT NULL,
    PRIMARY KEY (tbl, key)
);
