-- Machines are LXD virtual machines or containers (LXD's instance type names).
ALTER TABLE machines
    ADD COLUMN instance_type text NOT NULL DEFAULT 'virtual-machine'
        CHECK (instance_type IN ('virtual-machine', 'container'));
