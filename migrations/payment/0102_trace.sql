-- The W3C trace context of the Charge that made the payment (`platform::trace` stored form):
-- the worker's PSP calls run in it. Payments made before traces were kept have ''.
ALTER TABLE payments
    ADD COLUMN trace text NOT NULL DEFAULT '' CHECK (length(trace) <= 600);
