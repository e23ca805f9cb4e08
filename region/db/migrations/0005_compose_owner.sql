-- Which region process is composing a VM, so a refresh can tell an in-flight
-- compose (keep its reservation) from one whose region died (settle it now).
ALTER TABLE machines ADD COLUMN composing_region text;
