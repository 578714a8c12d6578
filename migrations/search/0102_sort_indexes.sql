-- Indexes that serve the sorts without sorting: newest and by price, for every ACTIVE ad and
-- within a category (the common filter). The first migration's ad_index_newest and
-- ad_index_price stay for the status-only orders.
CREATE INDEX ad_index_category_newest ON ad_index (status, category, created_ms DESC, ad_id DESC);
CREATE INDEX ad_index_category_price ON ad_index (status, category, price_minor, ad_id);
