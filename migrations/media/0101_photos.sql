-- The media service's table (services/media/src/store.rs).
CREATE TABLE photos (
    photo_id          text   PRIMARY KEY CHECK (char_length(photo_id) BETWEEN 1 AND 64),
    owner_id          text   NOT NULL CHECK (char_length(owner_id) BETWEEN 1 AND 64),
    ad_id             text   NOT NULL CHECK (char_length(ad_id) BETWEEN 1 AND 64),
    object_key        text   NOT NULL UNIQUE CHECK (char_length(object_key) BETWEEN 1 AND 300),
    content_type      text   NOT NULL CHECK (char_length(content_type) BETWEEN 1 AND 100),
    size_bytes        bigint NOT NULL CHECK (size_bytes > 0),
    state             text   NOT NULL CHECK (state IN ('PENDING', 'READY', 'REJECTED')),
    reason            text   NOT NULL CHECK (char_length(reason) <= 200),
    created_ms        bigint NOT NULL,
    upload_expires_ms bigint NOT NULL,
    updated_ms        bigint NOT NULL
);
-- The upload rate limit counts an owner's recent photos.
CREATE INDEX photos_owner_created ON photos (owner_id, created_ms DESC, photo_id DESC);
-- The sweeper finds uploads never completed.
CREATE INDEX photos_pending_expiry ON photos (upload_expires_ms, photo_id) WHERE state = 'PENDING';
