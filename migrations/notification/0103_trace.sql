-- The W3C trace context of the Notify that queued a message (`platform::trace` stored form):
-- the worker's provider calls run in it. Messages queued before traces were kept have ''.
ALTER TABLE outgoing
    ADD COLUMN trace text NOT NULL DEFAULT '' CHECK (length(trace) <= 600);
