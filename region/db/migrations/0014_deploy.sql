-- Deploy (issue 12): what a machine is doing, when its deploy started, and its own credentials
-- for reporting back (cloud-init's webhook to /MAAS/metadata/status/<system_id>).
ALTER TABLE machines
    ADD COLUMN status_message text NOT NULL DEFAULT '',
    ADD COLUMN deploy_started timestamptz;               -- the running deploy's start (its timeout)
CREATE INDEX machines_deploying ON machines (deploy_started) WHERE status = 'deploying';

-- One token per machine while it is deployed; the secret is encrypted like API tokens'.
CREATE TABLE machine_tokens (
    machine_id       integer PRIMARY KEY REFERENCES machines (id) ON DELETE CASCADE,
    consumer_key     text NOT NULL UNIQUE,
    token_key        text NOT NULL UNIQUE,
    token_secret_enc bytea NOT NULL,
    created          timestamptz NOT NULL DEFAULT now()
);

-- LXD profiles a host's deployed machines also get (a GPU, or a proxy device back to the region).
ALTER TABLE vm_hosts ADD COLUMN deploy_profiles text[] NOT NULL DEFAULT '{}';
