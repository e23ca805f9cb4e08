"""How to reach the host of a machine, read with the machine and its disks in one statement
(deleting a VM needs nothing else: neither the machine's NICs nor the host's storage pools)."""

from __future__ import annotations

import attrs

from region.db import machines
from region.db.errors import NotFound
from region.db.pool import Statement
from region.db.prepared import Prepared
from region.secretbox import SecretBox

_MACHINE_COLUMNS = ", ".join(f"m.{column.strip()}" for column in machines.COLUMNS.split(","))


@attrs.frozen
class HostReach:
    """A host's address, identity and decrypted secret (the LXD client key or SSH password)."""

    type: str
    power_address: str
    project: str
    certificate: str | None
    server_fingerprint: str | None
    secret: str | None = attrs.field(repr=False)


_MACHINE_AND_REACH = Prepared(
    "machine_and_reach",
    f"SELECT {_MACHINE_COLUMNS}, {machines.disks_json()},"
    " h.type, h.power_address, h.project, h.certificate, h.server_fingerprint, s.value"
    " FROM machines m JOIN vm_hosts h ON h.id = m.host_id LEFT JOIN secrets s ON s.name = h.key_secret"
    " WHERE m.system_id = %s")


def machine_and_reach_statement(box: SecretBox, system_id: str) -> Statement[tuple[machines.Machine, HostReach]]:
    """The machine with its disks (its NICs are not read: that list stays empty) and how to
    reach its host; NotFound("Machine") when there is no such machine."""

    def parse(rows: list[tuple] | None) -> tuple[machines.Machine, HostReach]:
        if not rows:
            raise NotFound("Machine")
        *machine, disks, host_type, address, project, certificate, fingerprint, secret = rows[0]
        return (machines.Machine(*machine, disks=machines.disks_from(disks)),
                HostReach(host_type, address, project, certificate, fingerprint,
                          None if secret is None else box.decrypt(secret)))

    return Statement(_MACHINE_AND_REACH, (system_id,), parse)
