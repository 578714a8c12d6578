-- Messages callers ask for through the gRPC Notify (services/notification/src/store.rs,
-- `Outgoing`), by idempotency key; the worker sends the PENDING ones to the provider.
CREATE TABLE outgoing (
    key             text    PRIMARY KEY CHECK (octet_length(key) BETWEEN 1 AND 128),
    recipient       text    NOT NULL CHECK (char_length(recipient) BETWEEN 1 AND 64),
    channel         text    NOT NULL CHECK (channel IN ('email', 'sms', 'push', 'in_app')),
    template        text    NOT NULL CHECK (char_length(template) BETWEEN 1 AND 64),
    request         text    NOT NULL CHECK (octet_length(request) <= 24576),
    subject         text    NOT NULL CHECK (char_length(subject) <= 256),
    body            text    NOT NULL CHECK (octet_length(body) <= 16384),
    status          text    NOT NULL CHECK (status IN ('PENDING', 'SENT', 'FAILED')),
    attempts        integer NOT NULL CHECK (attempts >= 0),
    reason          text    NOT NULL CHECK (char_length(reason) <= 512),
    provider_id     text    NOT NULL CHECK (char_length(provider_id) <= 128),
    next_attempt_ms bigint  NOT NULL,
    created_ms      bigint  NOT NULL,
    updated_ms      bigint  NOT NULL,
    version         bigint  NOT NULL
);
