-- Tags (the MAAS shape): a machine's tags stay in machines.tags (text[]);
-- this table holds each tag's own fields.  A definition (in MAAS an XPath
-- over commissioning data) is stored as given: vmyard has no hardware
-- details to evaluate it against, so every tag is applied by hand
-- (tags/{name}/?op=update_nodes).

CREATE TABLE tags (
    id          serial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9_-]+$' AND length(name) <= 256),
    definition  text NOT NULL DEFAULT '',
    comment     text NOT NULL DEFAULT '',
    kernel_opts text NOT NULL DEFAULT '',
    created     timestamptz NOT NULL DEFAULT now(),
    updated     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX machines_tags ON machines USING gin (tags);
