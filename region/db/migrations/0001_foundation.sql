-- Foundation: racks, zones, resource pools, users and API tokens, secrets, events.

CREATE TABLE zones (
    id          serial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9_-]+$' AND length(name) <= 256),
    description text NOT NULL DEFAULT '',
    is_default  boolean NOT NULL DEFAULT false,
    created     timestamptz NOT NULL DEFAULT now(),
    updated     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX zones_one_default ON zones (is_default) WHERE is_default;
INSERT INTO zones (name, description, is_default) VALUES ('default', '', true);

CREATE TABLE resource_pools (
    id          serial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9_-]+$' AND length(name) <= 256),
    description text NOT NULL DEFAULT '',
    is_default  boolean NOT NULL DEFAULT false,
    created     timestamptz NOT NULL DEFAULT now(),
    updated     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX resource_pools_one_default ON resource_pools (is_default) WHERE is_default;
INSERT INTO resource_pools (name, description, is_default) VALUES ('default', 'Default pool', true);

CREATE TABLE users (
    id            serial PRIMARY KEY,
    username      text NOT NULL UNIQUE CHECK (length(username) BETWEEN 1 AND 150),
    email         text NOT NULL DEFAULT '',
    password_hash text NOT NULL,
    is_superuser  boolean NOT NULL DEFAULT false,
    is_active     boolean NOT NULL DEFAULT true,
    created       timestamptz NOT NULL DEFAULT now(),
    last_login    timestamptz
);

-- OAuth 1.0a credentials in the MAAS form consumer_key:token_key:token_secret.
-- The secret is encrypted with the region key (see secrets.py).
CREATE TABLE api_tokens (
    id               serial PRIMARY KEY,
    user_id          integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name             text NOT NULL DEFAULT '',
    consumer_key     text NOT NULL UNIQUE,
    token_key        text NOT NULL UNIQUE,
    token_secret_enc bytea NOT NULL,
    created          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- Encrypted values (region CA key, rack enrollment secret, later host keys).
CREATE TABLE secrets (
    name    text PRIMARY KEY,
    value   bytea NOT NULL,
    updated timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE racks (
    id               serial PRIMARY KEY,
    system_id        text NOT NULL UNIQUE,
    hostname         text NOT NULL,
    version          text NOT NULL DEFAULT '',
    cert_fingerprint text NOT NULL UNIQUE,
    created          timestamptz NOT NULL DEFAULT now(),
    last_seen        timestamptz
);

-- One row per running region process; a heartbeat says it is alive.
CREATE TABLE region_processes (
    id        text PRIMARY KEY,
    hostname  text NOT NULL,
    pid       integer NOT NULL,
    started   timestamptz NOT NULL DEFAULT now(),
    heartbeat timestamptz NOT NULL DEFAULT now()
);

-- Which region process holds how many connections from which rack.
CREATE TABLE rack_connections (
    rack_id     integer NOT NULL REFERENCES racks (id) ON DELETE CASCADE,
    region_id   text NOT NULL REFERENCES region_processes (id) ON DELETE CASCADE,
    connections integer NOT NULL CHECK (connections > 0),
    since       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rack_id, region_id)
);

CREATE TABLE events (
    id          bigserial PRIMARY KEY,
    created     timestamptz NOT NULL DEFAULT now(),
    level       text NOT NULL CHECK (level IN ('DEBUG', 'INFO', 'WARNING', 'ERROR', 'AUDIT')),
    type        text NOT NULL,
    description text NOT NULL DEFAULT '',
    username    text,
    object_type text,
    object_id   text
);
CREATE INDEX events_object ON events (object_type, object_id);
