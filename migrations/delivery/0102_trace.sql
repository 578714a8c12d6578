-- The W3C trace context of the request that made the shipment (`platform::trace` stored
-- form): the worker's courier calls run in it. Shipments made before traces were kept have ''.
ALTER TABLE shipments
    ADD COLUMN trace text NOT NULL DEFAULT '' CHECK (length(trace) <= 600);
