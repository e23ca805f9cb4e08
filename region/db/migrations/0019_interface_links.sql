-- A machine NIC's links to subnets, as MAAS models them: one static_ips row per link, its `mode`
-- saying how the NIC comes up there.  'static' and 'auto' hold an address ('auto' gets it at
-- deploy, so its ip is NULL until then), 'dhcp' and 'link_up' never do; only 'link_up' may name
-- no subnet.  Rows without an ip are links, not addresses: IPAM reads only rows with one.
ALTER TABLE static_ips
    ALTER COLUMN ip DROP NOT NULL,
    ALTER COLUMN subnet_id DROP NOT NULL,
    ADD COLUMN mode text NOT NULL DEFAULT 'static' CHECK (mode IN ('auto', 'static', 'dhcp', 'link_up')),
    ADD COLUMN default_gateway boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT static_ips_static_has_ip CHECK (mode <> 'static' OR ip IS NOT NULL),
    ADD CONSTRAINT static_ips_dhcp_link_up_no_ip CHECK (mode NOT IN ('dhcp', 'link_up') OR ip IS NULL),
    ADD CONSTRAINT static_ips_subnet_or_link_up CHECK (subnet_id IS NOT NULL OR mode = 'link_up'),
    ADD CONSTRAINT static_ips_link_has_nic CHECK (ip IS NOT NULL OR machine_interface_id IS NOT NULL);
UPDATE static_ips SET mode = 'auto' WHERE alloc_type = 'auto' AND machine_interface_id IS NOT NULL;

-- A NIC follows the VLAN of the host interface it is attached to, unless a link chose another
-- (vlan_id) or it was disconnected (MAAS's interface.vlan = None).
ALTER TABLE machine_interfaces
    ADD COLUMN vlan_id      integer REFERENCES vlans (id) ON DELETE SET NULL,
    ADD COLUMN disconnected boolean NOT NULL DEFAULT false;
