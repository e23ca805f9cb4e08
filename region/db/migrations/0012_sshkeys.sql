-- Users' SSH public keys (MAAS sshkeys/), put on the machines they deploy.  `key` is the
-- normalised "type base64 [comment]" line; `fingerprint` (SHA256 of the key blob, as
-- ssh-keygen -l shows it) makes the same key twice for one user a duplicate whatever
-- its comment.
CREATE TABLE sshkeys (
    id          serial PRIMARY KEY,
    user_id     integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key         text NOT NULL,
    fingerprint text NOT NULL,
    created     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, fingerprint)
);
