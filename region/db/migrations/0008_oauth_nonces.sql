-- OAuth 1.0a replay protection: a (token, nonce) pair is accepted once while its
-- timestamp is inside the window (300 s either side of now).  Shared by every region
-- on this database, so a replay is refused whichever region it reaches.
CREATE TABLE oauth_nonces (
    token_key  text NOT NULL,
    nonce      text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (token_key, nonce)
);
CREATE INDEX oauth_nonces_expiry ON oauth_nonces (expires_at);
