-- Allocation (machines/?op=allocate, release, deploy, set_owner_data): who
-- holds a machine for what.  owner_id already exists; these are the rest of
-- what MAAS keeps per allocation.  All are cleared on release.
ALTER TABLE machines
    ADD COLUMN agent_name    text NOT NULL DEFAULT '',   -- Juju: the model UUID
    ADD COLUMN owner_data    jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(owner_data) = 'object'),
    ADD COLUMN distro_series text NOT NULL DEFAULT '';   -- as given to deploy
CREATE INDEX machines_agent_name ON machines (agent_name) WHERE agent_name <> '';
