-- Durable deploys (issue 12): the region at a deploy's rack step, and what another region needs
-- to carry that step out again if this one dies (its heartbeat goes stale) before it is done.
ALTER TABLE machines
    ADD COLUMN deploy_region text,                -- NULL once the rack has started the machine
    ADD COLUMN deploy_resource_id integer REFERENCES boot_resources (id) ON DELETE SET NULL,
    ADD COLUMN deploy_user_data_enc bytea;        -- the user's data, encrypted; dropped when the deploy ends
