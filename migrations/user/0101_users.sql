-- The user service's tables (services/user/src/store.rs).

-- Accounts. email_key is the trimmed, lower-cased email the service computes; its unique
-- index is what keeps one account per email when instances race.
CREATE TABLE users (
    user_id       text   PRIMARY KEY CHECK (char_length(user_id) BETWEEN 1 AND 64),
    email         text   NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    email_key     text   NOT NULL UNIQUE CHECK (char_length(email_key) BETWEEN 3 AND 254),
    display_name  text   NOT NULL CHECK (char_length(display_name) BETWEEN 1 AND 100),
    password_hash text   NOT NULL CHECK (password_hash <> ''),
    created_ms    bigint NOT NULL,
    version       bigint NOT NULL CHECK (version > 0)
);

-- The JWT signing key set (Ed25519 seeds, base64url). The newest signs.
CREATE TABLE signing_keys (
    kid        text   PRIMARY KEY CHECK (char_length(kid) BETWEEN 1 AND 64),
    seed       text   NOT NULL CHECK (seed <> ''),
    created_ms bigint NOT NULL
);

-- Refresh tokens by the SHA-256 of their secret; a family is one login's chain of refreshes.
CREATE TABLE refresh_tokens (
    token_hash text   PRIMARY KEY CHECK (token_hash <> ''),
    user_id    text   NOT NULL,
    family_id  text   NOT NULL,
    expires_ms bigint NOT NULL,
    state      text   NOT NULL CHECK (state IN ('ACTIVE', 'USED', 'REVOKED')),
    version    bigint NOT NULL CHECK (version > 0)
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_ms);

-- Failed logins per account (scope 'account', key the email key) and per client address.
CREATE TABLE login_failures (
    scope           text   NOT NULL,
    key             text   NOT NULL,
    window_start_ms bigint NOT NULL,
    failures        bigint NOT NULL,
    PRIMARY KEY (scope, key)
);
