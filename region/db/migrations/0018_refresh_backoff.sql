-- Periodic refresh backs off per host: refresh_failures counts failed refreshes in a row (reset by
-- a success) and stretches that host's next_refresh exponentially. The index serves the
-- scheduler's lease query (due hosts, the ones that answered last time first).
ALTER TABLE vm_hosts ADD COLUMN refresh_failures integer NOT NULL DEFAULT 0;
CREATE INDEX vm_hosts_refresh_due ON vm_hosts (refresh_failures, next_refresh);
