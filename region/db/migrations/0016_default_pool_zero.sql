-- The default resource pool has id 0, as in MAAS (resourcepool/0/). Its references follow the
-- new id by ON UPDATE CASCADE; new pools keep taking ids from the sequence (1 and up).
ALTER TABLE vm_hosts
    DROP CONSTRAINT vm_hosts_pool_id_fkey,
    ADD CONSTRAINT vm_hosts_pool_id_fkey FOREIGN KEY (pool_id) REFERENCES resource_pools (id) ON UPDATE CASCADE;
ALTER TABLE machines
    DROP CONSTRAINT machines_pool_id_fkey,
    ADD CONSTRAINT machines_pool_id_fkey FOREIGN KEY (pool_id) REFERENCES resource_pools (id) ON UPDATE CASCADE;
UPDATE resource_pools SET id = 0 WHERE is_default;
