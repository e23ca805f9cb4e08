"""allocate, release, deploy and set_owner_data on machines/ (what Juju and Terraform drive).

Mixed into `MachinesHandler` and `MachineHandler`.  Any user may allocate;
only the owner or an admin may release, deploy or set owner data (403
otherwise).
"""

from __future__ import annotations

from region.api.allocate_form import parse_allocate
from region.api.errors import BadRequest
from region.api.handler import Call, operation
from region.api.machine_json import render_views
from region.services import allocate, deploy, ownership

TRUE = ("true", "1", "yes", "on")
RELEASING = (12, "Releasing")


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
        :param cpu_count: Optional. Minimum cores (at most 4096).
        :type cpu_count: Int
        :param mem: Optional. Minimum memory, MiB (a composed VM gets this, default 2048; at most 2^30).
        :type mem: Int
        :param tags: Optional. Tags the machine (or VM host, to compose) must have (repeatable; each
            list constraint takes at most 100 values).
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
        :param storage: Optional. ``label:size(tags),…`` in GB; the first is the root disk (at most 64);
            a root size of 0 means any (Juju sends ``root:0``; composed at 8 GB).
        :type storage: String
        :param interfaces: Optional. ``label:space=X[,…][;…]``: a NIC per label on a host interface
            in that space/subnet/VLAN/fabric (at most 64 labels).
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
        :param instance_type: Optional (vmyard, beyond MAAS). ``virtual-machine`` (default) or
            ``container``: the type of machine to match or compose; a machine named by ``name`` or
            ``system_id`` may be either unless this is given.
        :type instance_type: String
        """
        result = await allocate.allocate(call.ctx, parse_allocate(call.params))
        rendered = render_views(result.views)[0]
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
        return await ownership.release_many(call.ctx, ids)


class MachineAllocateOperations:
    """Mixed into MachineHandler."""

    @operation("POST", "release")
    async def release(self, call: Call):
        """Release the machine: a VM composed by allocate is deleted, others go back to Ready.

        :param comment: Optional. Recorded in the event log.
        :type comment: String
        """
        released = await ownership.release(call.ctx, call.path_args["system_id"])
        rendered = render_views(released.views)[0]
        if released.decomposed:  # the machine is gone: its last view, as it was leaving
            rendered.update(status=RELEASING[0], status_name=RELEASING[1], owner=None, owner_data={})
        return rendered

    @operation("POST", "deploy")
    async def deploy(self, call: Call):
        """Deploy the machine: rebuild its root disk from an image and boot it with cloud-init.

        The machine is Deploying at once and the call returns; a rack then gets the image onto
        the VM host, rebuilds the instance from it (same devices, MACs, volumes and limits) with
        cloud-init's data (hostname, the owner's SSH keys, ``user_data``, the static IPs) and
        starts it.  It becomes Deployed when cloud-init reports that it finished, Failed
        deployment when cloud-init reports a failure, LXD cannot start it (with LXD's reason) or
        ``deploy_timeout`` passes.  A Ready machine nobody owns is allocated to the caller first.

        :param distro_series: Optional. The image: ``noble``, ``ubuntu/noble``, ``custom/NAME`` or
            another boot resource's name (default: the region's ``default_distro_series``).
        :type distro_series: String
        :param user_data: Optional. cloud-init user data, base64-encoded (gzip inside is
            decompressed, as Juju sends it); text that is not base64 is taken as it is.
        :type user_data: String
        :param hwe_kernel: Optional. Accepted and ignored (the image brings its kernel).
        :type hwe_kernel: String
        :param enable_hw_sync: Optional. Accepted and ignored.
        :type enable_hw_sync: Boolean
        :param ephemeral_deploy: Optional. Only false: vmyard always deploys to disk.
        :type ephemeral_deploy: Boolean
        """
        if any((call.params.get(f) or "").lower() in TRUE for f in ("install_kvm", "register_vmhost")):
            raise BadRequest("vmyard cannot deploy a machine as a VM host. Add an existing LXD server with "
                             "vm-hosts/ instead.")
        if (call.params.get("ephemeral_deploy") or "").lower() in TRUE:
            raise BadRequest.field("ephemeral_deploy", "Ephemeral deployments are not supported: vmyard deploys "
                                                       "to the machine's root disk.")
        inputs = deploy.DeployInputs(call.params.get("distro_series") or "", call.params.get("user_data") or None)
        return render_views(await deploy.deploy(call.ctx, call.path_args["system_id"], inputs))[0]

    @operation("POST", "set_owner_data")
    async def set_owner_data(self, call: Call):
        """Set owner data: each parameter ``key=value`` is stored; an empty value deletes the key."""
        changes = {k: call.params.get(k) or "" for k in call.params.keys() if k != "op" and not k.startswith("oauth_")}
        return render_views(await ownership.set_owner_data(call.ctx, call.path_args["system_id"], changes))[0]
