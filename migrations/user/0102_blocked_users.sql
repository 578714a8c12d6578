-- Accounts moderation blocked (from moderation.results): their logins are refused.
CREATE TABLE blocked_users (
    user_id    text   PRIMARY KEY CHECK (char_length(user_id) BETWEEN 1 AND 64),
    reason     text   NOT NULL CHECK (char_length(reason) <= 200),
    blocked_ms bigint NOT NULL
);
