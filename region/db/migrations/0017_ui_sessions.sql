-- Web UI sessions.  The cookie holds a random key; only its SHA-256 is stored, so a copy of
-- this table logs nobody in.  csrf_token is sent back by the UI in a header on every write.
CREATE TABLE ui_sessions (
    key_hash    bytea PRIMARY KEY,
    user_id     integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token  text NOT NULL,
    created     timestamptz NOT NULL DEFAULT now(),
    expires     timestamptz NOT NULL
);
CREATE INDEX ui_sessions_expires ON ui_sessions (expires);
CREATE INDEX ui_sessions_user ON ui_sessions (user_id);
