-- What each host's VMs were given, kept per (host, project) and per (host, project, storage
-- pool) by triggers in the transactions that add, change or remove VMs and disks, so vm-hosts/
-- reads a row a host instead of summing every VM and disk (issue 16).  Readers pick the
-- host's tracked project.  Rows that fall to zero stay (harmless; a listing reads 0 either way).

CREATE TABLE vm_host_vm_totals (
    host_id integer NOT NULL REFERENCES vm_hosts (id) ON DELETE CASCADE,
    project text NOT NULL,
    vms     bigint NOT NULL,
    cores   bigint NOT NULL,
    memory  bigint NOT NULL,  -- bytes
    PRIMARY KEY (host_id, project)
);

CREATE TABLE vm_host_disk_totals (
    host_id      integer NOT NULL REFERENCES vm_hosts (id) ON DELETE CASCADE,
    project      text NOT NULL,
    storage_pool text,             -- NULL: disks not in a named pool (counted in the total only)
    size         bigint NOT NULL,  -- bytes
    UNIQUE NULLS NOT DISTINCT (host_id, project, storage_pool)
);

CREATE FUNCTION vm_host_add_vm(h integer, p text, n integer, c bigint, m bigint) RETURNS void AS $$
    INSERT INTO vm_host_vm_totals AS t (host_id, project, vms, cores, memory) VALUES (h, p, n, c, m)
    ON CONFLICT (host_id, project) DO UPDATE
        SET vms = t.vms + EXCLUDED.vms, cores = t.cores + EXCLUDED.cores, memory = t.memory + EXCLUDED.memory;
$$ LANGUAGE sql;

CREATE FUNCTION vm_host_add_disk(h integer, p text, pool text, s bigint) RETURNS void AS $$
    INSERT INTO vm_host_disk_totals AS t (host_id, project, storage_pool, size) VALUES (h, p, pool, s)
    ON CONFLICT (host_id, project, storage_pool) DO UPDATE SET size = t.size + EXCLUDED.size;
$$ LANGUAGE sql;

CREATE FUNCTION vm_host_sub_vm(h integer, p text, c bigint, m bigint) RETURNS void AS $$
    UPDATE vm_host_vm_totals SET vms = vms - 1, cores = cores - c, memory = memory - m
    WHERE host_id = h AND project = p;
$$ LANGUAGE sql;

CREATE FUNCTION vm_host_sub_disks(h integer, p text, machine integer) RETURNS void AS $$
    UPDATE vm_host_disk_totals t SET size = t.size - d.size
    FROM (SELECT storage_pool, sum(size)::bigint AS size FROM machine_disks WHERE machine_id = machine
          GROUP BY storage_pool) d
    WHERE t.host_id = h AND t.project = p AND t.storage_pool IS NOT DISTINCT FROM d.storage_pool;
$$ LANGUAGE sql;

CREATE FUNCTION machines_keep_host_totals() RETURNS trigger AS $$
BEGIN
    -- A host's deletion cascades to its totals and its machines: nothing to keep then.
    IF TG_OP = 'DELETE' AND NOT EXISTS (SELECT 1 FROM vm_hosts WHERE id = OLD.host_id) THEN
        RETURN OLD;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM vm_host_sub_vm(OLD.host_id, OLD.project, OLD.cpu_count, OLD.memory);
        -- Disks follow their machine only when it changes host or project; on DELETE they are
        -- subtracted here, before the cascade removes them (their trigger then finds no machine).
        IF TG_OP = 'DELETE' OR (OLD.host_id, OLD.project) IS DISTINCT FROM (NEW.host_id, NEW.project) THEN
            PERFORM vm_host_sub_disks(OLD.host_id, OLD.project, OLD.id);
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM vm_host_add_vm(NEW.host_id, NEW.project, 1, NEW.cpu_count, NEW.memory);
        IF TG_OP = 'UPDATE' AND (OLD.host_id, OLD.project) IS DISTINCT FROM (NEW.host_id, NEW.project) THEN
            PERFORM vm_host_add_disk(NEW.host_id, NEW.project, d.storage_pool, sum(d.size)::bigint)
            FROM machine_disks d WHERE d.machine_id = NEW.id GROUP BY d.storage_pool;
        END IF;
        RETURN NEW;
    END IF;
    RETURN OLD;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER machines_keep_host_totals_write AFTER INSERT OR UPDATE OF host_id, project, cpu_count, memory
    ON machines FOR EACH ROW EXECUTE FUNCTION machines_keep_host_totals();
CREATE TRIGGER machines_keep_host_totals_delete BEFORE DELETE
    ON machines FOR EACH ROW EXECUTE FUNCTION machines_keep_host_totals();

CREATE FUNCTION machine_disks_keep_host_totals() RETURNS trigger AS $$
DECLARE
    vm record;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        SELECT host_id, project INTO vm FROM machines WHERE id = OLD.machine_id;
        IF FOUND THEN
            PERFORM vm_host_add_disk(vm.host_id, vm.project, OLD.storage_pool, -OLD.size);
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        SELECT host_id, project INTO vm FROM machines WHERE id = NEW.machine_id;
        PERFORM vm_host_add_disk(vm.host_id, vm.project, NEW.storage_pool, NEW.size);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER machine_disks_keep_host_totals AFTER INSERT OR UPDATE OF machine_id, size, storage_pool OR DELETE
    ON machine_disks FOR EACH ROW EXECUTE FUNCTION machine_disks_keep_host_totals();

INSERT INTO vm_host_vm_totals (host_id, project, vms, cores, memory)
    SELECT host_id, project, count(*), sum(cpu_count), sum(memory) FROM machines GROUP BY host_id, project;
INSERT INTO vm_host_disk_totals (host_id, project, storage_pool, size)
    SELECT m.host_id, m.project, d.storage_pool, sum(d.size)
    FROM machine_disks d JOIN machines m ON m.id = d.machine_id GROUP BY m.host_id, m.project, d.storage_pool;
