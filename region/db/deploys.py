"""Deploy bookkeeping (0014_deploy.sql): machines' deploy state and their own OAuth tokens (a
host's `deploy_profiles` are on its row, region/db/hosts.py).

Every status change is a conditional UPDATE on the expected statuses, so a report that comes
after a release (or a second region's timeout) changes nothing.
"""

from __future__ import annotations

import secrets as _random
import string

import attrs

from region.secretbox import SecretBox

_ALPHANUM = string.ascii_letters + string.digits


@attrs.frozen
class MachineToken:
    machine_id: int
    consumer_key: str
    token_key: str
    secret: str = attrs.field(repr=False)


@attrs.frozen
class DeployingMachine:
    system_id: str
    instance_name: str
    host_id: int
    project: str
    instance_type: str
    booted: bool  # the rack has started it (power on), so cloud-init may be running
    seconds: float  # since the deploy started


def _random_string(length: int) -> str:
    return "".join(_random.choice(_ALPHANUM) for _ in range(length))


def new_machine_token_thd(cur, box: SecretBox, machine_id: int, system_id: str) -> MachineToken:
    """A fresh token for the machine, replacing any it had (MAAS: consumer key = system id-ish)."""
    token = MachineToken(machine_id, f"{system_id}-{_random_string(8)}", _random_string(18), _random_string(32))
    cur.execute(
        "INSERT INTO machine_tokens (machine_id, consumer_key, token_key, token_secret_enc) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (machine_id) DO UPDATE SET consumer_key = EXCLUDED.consumer_key,"
        " token_key = EXCLUDED.token_key, token_secret_enc = EXCLUDED.token_secret_enc, created = now()",
        (machine_id, token.consumer_key, token.token_key, box.encrypt(token.secret)))
    return token


def machine_token_thd(cur, box: SecretBox, consumer_key: str, token_key: str) -> tuple[str, str] | None:
    """(system_id, token secret) of the machine these keys belong to, or None."""
    cur.execute("SELECT m.system_id, t.token_secret_enc FROM machine_tokens t JOIN machines m ON m.id = t.machine_id"
                " WHERE t.consumer_key = %s AND t.token_key = %s", (consumer_key, token_key))
    row = cur.fetchone()
    return None if row is None else (row[0], box.decrypt(bytes(row[1])))


def delete_machine_token_thd(cur, machine_id: int) -> None:
    cur.execute("DELETE FROM machine_tokens WHERE machine_id = %s", (machine_id,))


def start_thd(cur, machine_id: int, *, distro_series: str, message: str, region_id: str, resource_id: int,
              user_data_enc: bytes) -> bool:
    """Allocated → Deploying, now, with `region_id` at the rack step; False when the machine is
    no longer Allocated."""
    cur.execute(
        "UPDATE machines SET status = 'deploying', status_message = %s, deploy_started = now(),"
        " distro_series = %s, deploy_region = %s, deploy_resource_id = %s, deploy_user_data_enc = %s,"
        " updated = now() WHERE id = %s AND status = 'allocated'",
        (message, distro_series, region_id, resource_id, user_data_enc, machine_id))
    return cur.rowcount == 1


def set_status_thd(cur, system_id: str, status: str, message: str, *, expect: tuple[str, ...]) -> bool:
    """Any status change ends the running deploy's rack step and drops the user's data."""
    cur.execute("UPDATE machines SET status = %s, status_message = %s, deploy_region = NULL,"
                " deploy_user_data_enc = NULL, updated = now()"
                " WHERE system_id = %s AND status = ANY(%s)", (status, message, system_id, list(expect)))
    return cur.rowcount == 1


def rack_step_done_thd(cur, machine_id: int, region_id: str) -> None:
    """The rack started the machine: no region need redo the step."""
    cur.execute("UPDATE machines SET deploy_region = NULL WHERE id = %s AND deploy_region = %s",
                (machine_id, region_id))


@attrs.frozen
class OrphanedDeploy:
    """A deploy whose region died at the rack step."""

    system_id: str
    region_id: str


def orphaned_thd(cur, dead_after: float) -> list[OrphanedDeploy]:
    """Deploys at the rack step whose region has not beaten for `dead_after` seconds (or is gone)."""
    cur.execute("SELECT m.system_id, m.deploy_region FROM machines m"
                " WHERE m.status = 'deploying' AND m.deploy_region IS NOT NULL AND NOT EXISTS ("
                "  SELECT 1 FROM region_processes p WHERE p.id = m.deploy_region"
                "  AND p.heartbeat > now() - %s * interval '1 second') ORDER BY m.deploy_started",
                (dead_after,))
    return [OrphanedDeploy(*r) for r in cur.fetchall()]


def claim_thd(cur, system_id: str, dead_region: str, region_id: str) -> tuple[int | None, bytes | None] | None:
    """Take over an orphaned deploy's rack step: (image id, encrypted user data), or None if
    another region took it first or the deploy ended meanwhile."""
    cur.execute("UPDATE machines SET deploy_region = %s, deploy_started = now(), updated = now()"
                " WHERE system_id = %s AND status = 'deploying' AND deploy_region = %s"
                " RETURNING deploy_resource_id, deploy_user_data_enc", (region_id, system_id, dead_region))
    row = cur.fetchone()
    return None if row is None else (row[0], bytes(row[1]) if row[1] is not None else None)


def end_thd(cur, machine_id: int) -> None:
    """The machine is released: its deploy state and token go."""
    cur.execute("UPDATE machines SET status_message = '', deploy_started = NULL, deploy_region = NULL,"
                " deploy_resource_id = NULL, deploy_user_data_enc = NULL WHERE id = %s", (machine_id,))
    delete_machine_token_thd(cur, machine_id)


def set_message_thd(cur, system_id: str, message: str, *, expect: tuple[str, ...]) -> bool:
    cur.execute("UPDATE machines SET status_message = %s, updated = now() WHERE system_id = %s AND status = ANY(%s)",
                (message, system_id, list(expect)))
    return cur.rowcount == 1


def deploying_thd(cur) -> list[DeployingMachine]:
    """Machines being deployed, oldest deploy first."""
    cur.execute("SELECT system_id, instance_name, host_id, project, instance_type, power_state = 'on',"
                " extract(epoch FROM now() - deploy_started)"
                " FROM machines WHERE status = 'deploying' AND deploy_started IS NOT NULL ORDER BY deploy_started")
    return [DeployingMachine(*r[:6], float(r[6])) for r in cur.fetchall()]




@attrs.frozen
class CopyTarget:
    """What a deploying machine's image copy is about: its image and its host."""

    host_id: int
    host_name: str
    resource_id: int
    resource_name: str
    lxd_fingerprint: str


def copy_target_thd(cur, system_id: str) -> CopyTarget | None:
    """None once the rack step is over (a late report changes nothing)."""
    cur.execute("SELECT h.id, h.name, r.id, r.name, r.lxd_fingerprint FROM machines m"
                " JOIN vm_hosts h ON h.id = m.host_id JOIN boot_resources r ON r.id = m.deploy_resource_id"
                " WHERE m.system_id = %s AND m.status = 'deploying' AND m.deploy_region IS NOT NULL"
                " AND r.lxd_fingerprint IS NOT NULL", (system_id,))
    row = cur.fetchone()
    return None if row is None else CopyTarget(*row)
