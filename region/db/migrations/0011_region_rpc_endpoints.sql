-- Where each region process listens for racks, so that a rack connected to one region
-- learns the others and connects to all of them (set once the RPC listener is bound).
ALTER TABLE region_processes ADD COLUMN rpc_host text, ADD COLUMN rpc_port integer;
