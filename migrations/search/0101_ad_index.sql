-- The search service's index (services/search/src/store.rs): the newest version of every ad,
-- with a generated full-text document (title weighted above description, in the Russian and
-- English configurations) and a GIN index over it.
CREATE TABLE ad_index (
    ad_id       text   PRIMARY KEY CHECK (char_length(ad_id) BETWEEN 1 AND 64),
    version     bigint NOT NULL CHECK (version > 0),
    owner_id    text   NOT NULL,
    title       text   NOT NULL,
    description text   NOT NULL,
    price_minor bigint NOT NULL,
    currency    text   NOT NULL,
    category    text   NOT NULL,
    region      text   NOT NULL,
    status      text   NOT NULL,
    created_ms  bigint NOT NULL,
    document    tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('russian', title), 'A')
        || setweight(to_tsvector('english', title), 'A')
        || setweight(to_tsvector('russian', description), 'B')
        || setweight(to_tsvector('english', description), 'B')
    ) STORED
);
CREATE INDEX ad_index_document ON ad_index USING gin (document);
CREATE INDEX ad_index_newest ON ad_index (status, created_ms DESC, ad_id DESC);
CREATE INDEX ad_index_price ON ad_index (status, price_minor, ad_id);
CREATE INDEX ad_index_filters ON ad_index (status, category, region);
