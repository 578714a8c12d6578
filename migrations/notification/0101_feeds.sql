-- The notification service's tables (services/notification/src/store.rs): one log of
-- user-facing updates per recipient, numbered 1, 2, 3, … without gaps.
CREATE TABLE feeds (
    recipient  text   PRIMARY KEY CHECK (char_length(recipient) BETWEEN 1 AND 64),
    epoch      text   NOT NULL CHECK (char_length(epoch) BETWEEN 1 AND 64),
    created_ms bigint NOT NULL
);
CREATE TABLE updates (
    recipient  text   NOT NULL CHECK (char_length(recipient) BETWEEN 1 AND 64),
    seq        bigint NOT NULL CHECK (seq >= 1),
    kind       text   NOT NULL CHECK (kind IN ('order.status', 'moderation.result', 'notice')),
    subject    text   NOT NULL CHECK (char_length(subject) <= 64),
    body       text   NOT NULL CHECK (octet_length(body) <= 16384),
    created_ms bigint NOT NULL,
    PRIMARY KEY (recipient, seq)
);
