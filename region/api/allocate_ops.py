"""allocate, release, deploy and set_owner_data on machines/ (what Juju and Terraform drive).

Mixed into `MachinesHandler` and `MachineHandler`.  Any user may allocate;
only the owner or an admin may release, deploy or set owner data (403
otherwise).
"""

from __future__ import annotations

from common import hosterrors
from region import allocate, compose
from region.api.allocate_form import parse_allocate
from region.api.errors import BadRequest, Conflict, Forbidden, ServiceUnavailable
from region.api.handler import Call, operation
from region.api.machine_json import render_machines
from region.db import allocations, events, machines, named
from region.db.errors import NotFound as RowNotFound
from region.rpc import NoRackConnected

TRUE = ("true", "1", "yes", "on")
RELEASING = (12, "Releasing")


def _may_manage(user, m: machines.Machine) -> bool:
    return bool(user.is_superuser) or (m.owner_id is not None and m.owner_id == user.id)


def _check_names_thd(cur, c: allocate.Constraints) -> None:
    """MAAS: a zone or pool that does not exist is a 400, not an empty match."""
    for field, kind, values in (("zone", named.ZONES, [c.zone] if c.zone else []),
                                ("not_in_zone", named.ZONES, list(c.not_in_zone)),
                                ("pool", named.RESOURCE_POOLS, [c.pool] if c.pool else []),
                                ("not_in_pool", named.RESOURCE_POOLS, list(c.not_in_pool))):
        missing = []
        for value in values:
            try:
                named.get_thd(cur, kind, value)
            except RowNotFound:
                missing.append(value)
        if missing:
            raise BadRequest.field(field, f"No such {kind.label}(s): {', '.join(missing)}.")


async def _release_one(call: Call, m: machines.Machine) -> dict | None:
    """Release `m`: a dynamic machine is decomposed (and its last machine object returned, as it
    no longer exists); any other goes back to Ready, powered off, with its allocation cleared."""
    last = None
    if m.dynamic:
        last = (await render_machines(call, [m]))[0]
        last.update(status=RELEASING[0], status_name=RELEASING[1], owner=None, owner_data={})
    elif m.power_state == "on":
        _, target = await call.region.hosts.target(m.host_id)
        try:
            state = await call.region.hosts.power(compose.for_project(target, m.project), m.instance_name, "off")
        except (hosterrors.DriverError, NoRackConnected) as e:
            raise ServiceUnavailable(f"Unable to release {m.hostname}: power off failed: {e}") from None
        await call.region.db.run(machines.set_power_state_thd, m.id, state)
    if m.dynamic:  # composed for an allocation: it goes away with it
        try:
            await compose.decompose(call.region, m, call.user.username)
        except (hosterrors.DriverError, NoRackConnected) as e:
            raise ServiceUnavailable(f"Unable to release {m.hostname}: its VM could not be decomposed: {e}") from None
        return last

    def release_thd(cur):
        if allocations.release_thd(cur, m.id):
            events.record_thd(cur, "MACHINE_RELEASED", f"released {m.hostname}", level="AUDIT",
                              username=call.user.username, object_type="machine", object_id=m.system_id)

    await call.region.db.run(release_thd)
    return last


def _releasable(m: machines.Machine) -> bool:
    return m.status in ("allocated", "deploying", "deployed")


class AllocateOperations:
    """Mixed into MachinesHandler."""

    @operation("POST", "allocate")
    async def allocate(self, call: Call):
        """Allocate a Ready machine matching the constraints, composing a VM on a VM host if none does.

        A VM composed this way is deleted again on release.  Among fitting hosts the one with the
        least room left after the VM is used (pack), unless the region's ``allocation_policy`` is
        ``spread``.  Nothing fits: 409 naming each host and what it lacks (no Retry-After).
        ``dry_run``: the Ready machine that would be allocated, unchanged; if one would have to be
        composed, 409 saying on which host (nothing is composed).

        :param name: Optional. Hostname of the machine wanted.
        :type name: String
        :param system_id: Optional. System id of the machine wanted.
        :type system_id: String
        :param arch: Optional. Architecture (repeatable), e.g. ``amd64``.
        :type arch: String
        :param cpu_count: Optional. Minimum cores.
        :type cpu_count: Int
        :param mem: Optional. Minimum memory, MiB (a composed VM gets this, default 2048).
        :type mem: Int
        :param tags: Optional. Tags the machine (or VM host, to compose) must have (repeatable).
        :type tags: String
        :param not_tags: Optional. Tags it must not have.
        :type not_tags: String
        :param zone: Optional. Zone name.
        :type zone: String
        :param not_in_zone: Optional. Excluded zones (repeatable).
        :type not_in_zone: String
        :param pool: Optional. Resource pool name.
        :type pool: String
        :param pod: Optional. VM host name; ``not_pod``, ``pod_type``, ``not_pod_type`` likewise.
        :type pod: String
        :param storage: Optional. ``label:size(tags),…`` in GB; the first is the root disk.
        :type storage: String
        :param interfaces: Optional. ``label:space=X[,…][;…]``: a NIC per label on a host interface
            in that space/subnet/VLAN/fabric.
        :type interfaces: String
        :param subnets: Optional. Also ``not_subnets`` (e.g. ``space:2``), ``vlans``, ``fabrics``,
            ``fabric_classes`` and their ``not_`` forms: networks some NIC is (not) on.
        :type subnets: String
        :param agent_name: Optional. Recorded with the allocation (Juju: the model UUID).
        :type agent_name: String
        :param comment: Optional. Recorded in the event log.
        :type comment: String
        :param dry_run: Optional. Change nothing.
        :type dry_run: Boolean
        """
        c = parse_allocate(call.params)
        await call.region.db.run(_check_names_thd, c)
        policy = call.region.config.allocation_policy
        try:
            result = await allocate.allocate(call.region, c, call.user, policy)
        except allocate.NoMatch as e:
            raise Conflict(str(e)) from None
        except allocate.Unavailable as e:
            raise ServiceUnavailable(str(e)) from None
        rendered = (await render_machines(call, [result.machine]))[0]
        rendered["constraints_by_type"] = result.match.as_json()
        return rendered

    @operation("POST", "release")
    async def release(self, call: Call):
        """Release machines: a VM composed by allocate is deleted, others go back to Ready.

        Returns the system ids released.  Unknown ids: 400; someone else's machine: 403; a machine
        in a state that cannot be released: 409.  Nothing is released unless all can be.

        :param machines: Required. System ids (repeatable).
        :type machines: String
        :param comment: Optional. Recorded in the event log.
        :type comment: String
        """
        ids = call.params.getlist("machines", split_commas=True)
        if not ids:
            raise BadRequest.field("machines", "This field is required: the system ids to release.")

        def load_thd(cur):
            found, missing = [], []
            for system_id in dict.fromkeys(ids):
                try:
                    found.append(machines.get_thd(cur, system_id))
                except RowNotFound:
                    missing.append(system_id)
            return found, missing

        found, missing = await call.region.db.run(load_thd)
        if missing:
            raise BadRequest(f"Unknown machine(s): {', '.join(missing)}.")
        denied = [m.system_id for m in found if not _may_manage(call.user, m)]
        if denied:
            raise Forbidden(f"You don't have the required permission to release the following "
                            f"machine(s): {', '.join(denied)}.")
        stuck = [f"{m.system_id} ({m.status})" for m in found if not _releasable(m) and m.status != "ready"]
        if stuck:
            raise Conflict(f"Machine(s) cannot be released in their current state: {', '.join(stuck)}.")
        released = []
        for m in found:
            if _releasable(m):
                await _release_one(call, m)
                released.append(m.system_id)
        return released


class MachineAllocateOperations:
    """Mixed into MachineHandler."""

    async def _owned(self, call: Call, action: str) -> machines.Machine:
        m = await call.region.db.run(machines.get_thd, call.path_args["system_id"])
        if not _may_manage(call.user, m) and not (action == "deploy" and m.status == "ready" and m.owner_id is None):
            raise Forbidden(f"You don't have permission to {action} {m.hostname}: only its owner or an admin may.")
        return m

    @operation("POST", "release")
    async def release(self, call: Call):
        """Release the machine: a VM composed by allocate is deleted, others go back to Ready.

        :param comment: Optional. Recorded in the event log.
        :type comment: String
        """
        m = await self._owned(call, "release")
        if m.status == "ready":
            return (await render_machines(call, [m]))[0]
        if not _releasable(m):
            raise Conflict(f"Machine {m.hostname} cannot be released in its current state ({m.status}).")
        last = await _release_one(call, m)
        if last is not None:
            return last
        return (await render_machines(call, [await call.region.db.run(machines.get_thd, m.system_id)]))[0]

    @operation("POST", "deploy")
    async def deploy(self, call: Call):
        """Deploy the machine: power its VM on; it reads Deployed once the VM is running.

        vmyard installs no operating system: ``distro_series`` is recorded and ``user_data`` is
        accepted but not delivered to the VM.  A Ready machine nobody owns is allocated to the
        caller first.  If the VM cannot be powered on the reply is 503 with the host's reason and
        the machine stays Allocated.

        :param distro_series: Optional. Recorded as the machine's series.
        :type distro_series: String
        :param user_data: Optional. Accepted, not delivered.
        :type user_data: String
        """
        if any((call.params.get(f) or "").lower() in TRUE for f in ("install_kvm", "register_vmhost")):
            raise BadRequest("vmyard cannot deploy a machine as a VM host: it does not install operating "
                             "systems. Add an existing LXD server with vm-hosts/ instead.")
        m = await self._owned(call, "deploy")
        region, user = call.region, call.user
        if m.status == "ready" and m.owner_id is None:
            if not await region.db.run(allocations.claim_thd, m.id, user.id, ""):
                raise Conflict(f"Machine {m.hostname} was allocated to someone else meanwhile.")
        elif m.status != "allocated":
            raise Conflict(f"Can't deploy {m.hostname}: it is {m.status}, not allocated.")
        series = call.params.get("distro_series") or ""
        if not await region.db.run(allocations.set_status_thd, m.id, "deploying", expect=("allocated",)):
            raise Conflict(f"Can't deploy {m.hostname}: its state changed meanwhile.")
        _, target = await region.hosts.target(m.host_id)
        try:
            state = await region.hosts.power(compose.for_project(target, m.project), m.instance_name, "on")
        except (hosterrors.DriverError, NoRackConnected) as e:
            await region.db.run(allocations.set_status_thd, m.id, "allocated", expect=("deploying",))
            raise ServiceUnavailable(f"Deploy of {m.hostname} failed: power on failed: {e}; the machine stays "
                                     f"Allocated.") from None

        def deployed_thd(cur):
            machines.set_power_state_thd(cur, m.id, state)
            allocations.set_status_thd(cur, m.id, "deployed", expect=("deploying",), distro_series=series)
            events.record_thd(cur, "MACHINE_DEPLOYED", f"deployed {m.hostname} (VM powered on)", level="AUDIT",
                              username=user.username, object_type="machine", object_id=m.system_id)
            return machines.get_thd(cur, m.system_id)

        return (await render_machines(call, [await region.db.run(deployed_thd)]))[0]

    @operation("POST", "set_owner_data")
    async def set_owner_data(self, call: Call):
        """Set owner data: each parameter ``key=value`` is stored; an empty value deletes the key."""
        m = await self._owned(call, "set owner data of")
        changes = {k: call.params.get(k) or "" for k in call.params.keys() if k != "op" and not k.startswith("oauth_")}

        def set_thd(cur):
            allocations.update_owner_data_thd(cur, m.id, changes)
            return machines.get_thd(cur, m.system_id)

        return (await render_machines(call, [await call.region.db.run(set_thd)]))[0]
