-- An order buys an ad: its id, and the version whose title and price the order carries.
-- Orders made before ads existed keep '' and 0.
ALTER TABLE orders
    ADD COLUMN ad_id      text   NOT NULL DEFAULT '' CHECK (length(ad_id) <= 64),
    ADD COLUMN ad_version bigint NOT NULL DEFAULT 0 CHECK (ad_version >= 0);
