-- The W3C trace context of the request that created the order (`traceparent`, then a line
-- feed and `tracestate` when there is one): the saga's steps run in it. Orders made before
-- traces were kept have ''.
ALTER TABLE orders
    ADD COLUMN trace text NOT NULL DEFAULT '' CHECK (length(trace) <= 600);
