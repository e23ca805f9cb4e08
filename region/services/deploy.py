"""Deploy: an Allocated machine becomes Deploying at once; the work goes on in the background.

`deploy` checks the request (image, user data, who asks), moves the machine to Deploying with a
fresh machine token in one transaction and returns; `_carry_out` then builds cloud-init's data
(services/cloudinit.py) and has a rack rebuild the instance from the image and start it
(DeployMachine).  cloud-init reports back to /MAAS/metadata/status/<system_id> with the
machine's own token (`report_status`): the finish of modules-final makes it Deployed, a failure
Failed deployment.  `check_deploys` (periodic) fails deploys past `deploy_timeout` and, for
containers whose webhook never got through, asks cloud-init through LXD.
"""

from __future__ import annotations

import time

import attrs
from twisted.internet import defer
from twisted.logger import Logger

from common import hosterrors
from common.logsafe import loggable
from common.models import CONTAINER, VIRTUAL_MACHINE, CloudInitData, ImageRef
from region.db import deploys, hosts, images as image_rows, machines, nonces
from region.db.images import BootResource
from region.rpc import NoRackConnected
from region.services import cloudinit, compose, faults, images, interfaces, ownership
from region.services.auth import OAUTH_WINDOW, OAuthCredentials, signature_matches
from region.services.context import Context
from region.services.errors import Conflict, FieldError, NotAuthenticated, NotFound
from region.services.image_files import DISK_FILETYPES
from region.services.machines import MachineViews, views_thd
from region.services.sshkeys import keys_for_user_thd

log = Logger()

POLL_AFTER = 60.0  # seconds a deploy waits for the webhook before cloud-init is asked through LXD
MESSAGE_LIMIT = 255
IMAGE_KINDS = {"tgz": CONTAINER, "lxd-rootfs": CONTAINER, "lxd-disk": VIRTUAL_MACHINE,
               **{filetype: VIRTUAL_MACHINE for filetype in DISK_FILETYPES}}  # lxd: either
_running: set[defer.Deferred] = set()  # deploys at work in this process (the rack call)


@attrs.frozen
class DeployInputs:
    distro_series: str
    user_data: str | None = None  # as sent: base64 (maybe of gzip), or plain text


@attrs.frozen
class StatusEvent:
    """One event of cloud-init's webhook reporter."""

    event_type: str  # start | finish
    name: str  # init-local, modules-final, modules-config/config-locale…
    result: str | None  # SUCCESS | WARN | FAIL on finish events
    description: str


def choose_image(found: list[BootResource], series: str, architecture: str) -> BootResource | None:
    """The image `series` names: a resource name (ubuntu/noble, custom/NAME) or a release (noble),
    for the machine's architecture; an exact name wins, then ubuntu/, then any other OS."""
    arch = architecture.split("/", 1)[0]
    fits = [r for r in found if not arch or r.architecture.split("/", 1)[0] == arch]
    for wanted in (lambda r: r.name == series, lambda r: r.name == f"ubuntu/{series}",
                   lambda r: r.name.split("/", 1)[-1] == series):
        matches = [r for r in fits if wanted(r)]
        if matches:
            return max(matches, key=lambda r: r.id)  # the newest upload
    return None


def _status_message(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT - 1] + "…"


async def deploy(ctx: Context, system_id: str, inputs: DeployInputs) -> MachineViews:
    m = await ownership.machine_for(ctx, system_id, "deploy")
    series = inputs.distro_series or ctx.config.default_distro_series
    resource = await _image_for(ctx, m, series)
    try:
        users_data = cloudinit.decode_user_data(inputs.user_data) if inputs.user_data else ""
        cloudinit.user_parts(users_data)  # refused now rather than in the background
    except cloudinit.BadUserData as e:
        raise FieldError("user_data", str(e)) from None
    await ownership.claim_if_free(ctx, m)

    def start_thd(cur):
        current = machines.get_thd(cur, system_id)
        if not deploys.start_thd(cur, current.id, distro_series=series,
                                 message=f"Deploying {resource.name}: rebuilding the root disk",
                                 region_id=ctx.region.region_id, resource_id=resource.id,
                                 user_data_enc=ctx.box.encrypt(users_data)):
            raise Conflict(f"Can't deploy {current.hostname}: it is {current.status}, not allocated.")
        token = deploys.new_machine_token_thd(cur, ctx.box, current.id, system_id)
        ctx.audit_thd(cur, "MACHINE_DEPLOYING", f"deploying {resource.name} on {current.hostname}", "machine",
                      system_id)
        return token, machines.get_thd(cur, system_id)

    token, started = await ctx.db.run(start_thd)
    _in_background(_carry_out(ctx, started, resource, token, users_data))
    return await ctx.db.run(lambda cur: views_thd(cur, [machines.get_thd(cur, system_id)]))


def _in_background(work_coroutine) -> None:
    work = defer.ensureDeferred(work_coroutine)
    _running.add(work)
    work.addBoth(lambda _: _running.discard(work))


async def _image_for(ctx: Context, m: machines.Machine, series: str) -> BootResource:
    found = await ctx.db.run(image_rows.list_thd)
    names = ", ".join(sorted({r.name for r in found if r.complete})) or "none: upload one with boot-resources/"
    if not series:
        raise FieldError("distro_series", f"distro_series is required (no default_distro_series is set): the "
                                          f"image to deploy ({names}).")
    resource = choose_image(found, series, m.architecture)
    if resource is None:
        raise FieldError("distro_series", f"Unknown image {series!r} for {m.architecture or 'this machine'}; "
                                          f"images: {names}.")
    if not resource.complete or resource.lxd_fingerprint is None:
        raise FieldError("distro_series", f"Image {resource.name} is {resource.state}, not ready to deploy.")
    kind = IMAGE_KINDS.get(resource.filetype)
    if kind is not None and kind != m.instance_type:
        raise FieldError("distro_series", f"Image {resource.name} ({resource.filetype}) is for a {kind}; "
                                          f"{m.hostname} is a {m.instance_type}.")
    return resource


@attrs.frozen
class _DeployData:
    ssh_keys: list[str]
    nics: list[cloudinit.NicConfig]
    profiles: list[str]


def _deploy_data_thd(cur, m: machines.Machine) -> _DeployData:
    keys = keys_for_user_thd(cur, m.owner_id) if m.owner_id is not None else []
    return _DeployData(keys, interfaces.nic_configs_thd(cur, m), hosts.get_thd(cur, m.host_id).deploy_profiles)


async def _carry_out(ctx: Context, m: machines.Machine, resource: BootResource, token: deploys.MachineToken,
                     users_data: str) -> None:
    """The rack's part of the deploy; any failure is recorded on the machine."""
    try:
        data = await ctx.db.run(_deploy_data_thd, m)
        webhook = cloudinit.Webhook(f"{ctx.config.url}metadata/status/{m.system_id}", token.consumer_key,
                                    token.token_key, token.secret)
        identity = cloudinit.Identity(m.hostname, f"{m.hostname}.maas", data.ssh_keys)
        cloud_init = CloudInitData(cloudinit.user_data(identity, webhook, users_data),
                                   cloudinit.network_config(data.nics, match_mac=m.instance_type != CONTAINER))
        url, image_token = images.image_url_for_rack(ctx, resource)
        image = ImageRef(resource.lxd_fingerprint or "", url, image_token, resource.lxd_size or 0, resource.filetype,
                         sum(f.size for f in resource.files if f.filetype == image_rows.SPLIT_METADATA))
        _, target = await ctx.hosts.target(m.host_id)
        faults.deploy_step(faults.BEFORE_RACK)
        state = await ctx.hosts.deploy(compose.for_project(target, m.project), m.instance_name, image, cloud_init,
                                       data.profiles, progress_id=m.system_id)
    except (hosterrors.DriverError, NoRackConnected) as e:
        await _fail(ctx, m.system_id, f"Deployment failed: {e}", copy_of=(resource.id, m.host_id))
        return
    except Exception as e:  # recorded on the machine rather than lost in the background
        log.failure("deploy of {system_id} failed", system_id=m.system_id)
        await _fail(ctx, m.system_id, f"Deployment failed: {type(e).__name__}: {e}", copy_of=(resource.id, m.host_id))
        return

    def booted_thd(cur):
        deploys.rack_step_done_thd(cur, m.id, ctx.region.region_id)
        image_rows.record_on_host_thd(cur, resource.id, m.host_id, image.fingerprint)
        machines.set_power_state_thd(cur, m.id, state)
        deploys.set_message_thd(cur, m.system_id, "Booting: waiting for cloud-init to report", expect=("deploying",))

    await ctx.db.run(booted_thd)


async def _fail(ctx: Context, system_id: str, message: str, *, copy_of: tuple[int, int] | None = None) -> None:
    """Failed deployment; `copy_of` (image id, host id): an image copy it may have left unfinished."""
    def fail_thd(cur):
        if copy_of is not None:
            image_rows.forget_copy_thd(cur, *copy_of)
        if deploys.set_status_thd(cur, system_id, "failed_deployment", _status_message(message),
                                  expect=("deploying",)):
            ctx.audit_thd(cur, "MACHINE_DEPLOY_FAILED", message, "machine", system_id)

    await ctx.db.run(fail_thd)
    log.warn("deploy of {system_id} failed: {message}", system_id=system_id, message=loggable(message, limit=2000))


async def _deployed(ctx: Context, system_id: str, how: str) -> None:
    def deployed_thd(cur):
        if deploys.set_status_thd(cur, system_id, "deployed", "Deployed", expect=("deploying",)):
            ctx.audit_thd(cur, "MACHINE_DEPLOYED", f"deployed ({how})", "machine", system_id)
            return True
        return False

    if await ctx.db.run(deployed_thd):
        log.info("{system_id} deployed ({how})", system_id=system_id, how=how)


def copy_progress(ctx: Context, system_id: str, stage: str, percent: int) -> None:
    """A rack's DeployProgress: the machine's status_message and the host's images show it."""
    _in_background(_record_copy_progress(ctx, system_id, stage, max(0, min(100, percent))))


async def _record_copy_progress(ctx: Context, system_id: str, stage: str, percent: int) -> None:
    doing = {"fetching": "fetching it from the region", "importing": "importing it into LXD"}.get(stage, "")

    def progress_thd(cur):
        target = deploys.copy_target_thd(cur, system_id)
        if target is None:  # the deploy is over, or the report is not about one
            return None
        message = f"Copying image {target.resource_name} to host {target.host_name}: {percent}%" + (
            f" ({doing})" if doing else "")
        image_rows.record_copying_thd(cur, target.resource_id, target.host_id, target.lxd_fingerprint, percent)
        deploys.set_message_thd(cur, system_id, message, expect=("deploying",))
        return message

    try:
        message = await ctx.db.run(progress_thd)
    except Exception:  # a progress report is worth a log line, not a failed deploy
        log.failure("recording the image copy progress of {system_id} failed", system_id=loggable(system_id))
        return
    if message:
        log.info("deploy of {system_id}: {message}", system_id=system_id, message=message)


# -- cloud-init reporting back ------------------------------------------------------------------------

async def report_status(ctx: Context, system_id: str, creds: OAuthCredentials, event: StatusEvent) -> None:
    """Apply one of cloud-init's events, sent with the machine's own token."""
    if abs(time.time() - creds.timestamp) > OAUTH_WINDOW:
        raise NotAuthenticated(f"oauth_timestamp is more than {OAUTH_WINDOW} seconds away from the region's time.")

    def check_thd(cur):
        found = deploys.machine_token_thd(cur, ctx.box, creds.consumer_key, creds.token_key)
        if found is None or found[0] != system_id or not signature_matches(creds.signature, found[1]):
            raise NotAuthenticated("Invalid machine token or signature.")
        if not nonces.remember_thd(cur, creds.token_key, creds.nonce, 2 * OAUTH_WINDOW):
            raise NotAuthenticated("This oauth_nonce was already used.")

    await ctx.db.run(check_thd)
    if event.event_type == "finish" and event.result == "FAIL":
        await _fail(ctx, system_id, f"cloud-init {event.name} failed: {event.description}")
    elif event.event_type == "finish" and event.name == "modules-final" and event.result == "SUCCESS":
        await _deployed(ctx, system_id, "cloud-init reported modules-final")
    else:
        message = _status_message(f"cloud-init: {event.event_type} {event.name}: {event.description}")
        await ctx.db.run(deploys.set_message_thd, system_id, message, expect=("deploying",))


# -- periodic: timeouts, dead regions' deploys and the fallback through LXD ---------------------------

async def check_deploys(ctx: Context) -> None:
    """Redo the rack step of deploys whose region died at it; fail deploys past `deploy_timeout`;
    ask cloud-init through LXD about containers whose webhook has been silent for POLL_AFTER s."""
    for orphan in await ctx.db.run(deploys.orphaned_thd, ctx.config.region_dead_after):
        await _resume(ctx, orphan)
    timeout = ctx.config.deploy_timeout
    for d in await ctx.db.run(deploys.deploying_thd):
        if d.seconds > timeout:
            await _fail(ctx, d.system_id, f"Deployment timed out: cloud-init did not report success within "
                                          f"{timeout:g} s.")
        elif d.seconds > POLL_AFTER and d.instance_type == CONTAINER and d.booted:
            await _ask_cloud_init(ctx, d)


async def _resume(ctx: Context, orphan: deploys.OrphanedDeploy) -> None:
    """Take over the rack step of a deploy whose region died (one region wins the claim) and do
    it again: the rebuild starts from the image whatever the dead region got done."""
    def claim_thd(cur):
        claimed = deploys.claim_thd(cur, orphan.system_id, orphan.region_id, ctx.region.region_id)
        if claimed is None:
            return None
        resource_id, user_data_enc = claimed
        m = machines.get_thd(cur, orphan.system_id)
        try:
            resource = image_rows.get_thd(cur, resource_id) if resource_id is not None else None
        except NotFound:  # deleted since the check above
            resource = None
        token = deploys.new_machine_token_thd(cur, ctx.box, m.id, m.system_id)
        deploys.set_message_thd(cur, m.system_id, "Deploying: the region at the rack step stopped; another "
                                                  "rebuilds the root disk", expect=("deploying",))
        ctx.audit_thd(cur, "MACHINE_DEPLOY_RESUMED", f"deploy of {m.hostname} resumed: region {orphan.region_id} "
                                                     f"died at the rack step", "machine", m.system_id)
        return m, resource, token, user_data_enc

    claimed = await ctx.db.run(claim_thd)
    if claimed is None:
        return
    m, resource, token, user_data_enc = claimed
    if resource is None or not resource.complete:
        await _fail(ctx, orphan.system_id, "Deployment failed: its region stopped at the rack step, and the image "
                                           "has been deleted since.")
        return
    log.info("resuming the deploy of {system_id}: region {region} died at the rack step", system_id=m.system_id,
             region=orphan.region_id)
    users_data = ctx.box.decrypt(user_data_enc) if user_data_enc is not None else ""
    _in_background(_carry_out(ctx, m, resource, token, users_data))


async def _ask_cloud_init(ctx: Context, d: deploys.DeployingMachine) -> None:
    try:
        _, target = await ctx.hosts.target(d.host_id)
        status, detail = await ctx.hosts.cloud_init_status(compose.for_project(target, d.project), d.instance_name)
    except (hosterrors.DriverError, NoRackConnected) as e:
        log.info("cannot ask cloud-init of {system_id}: {error}", system_id=d.system_id, error=loggable(str(e)))
        return
    if status == "done":
        await _deployed(ctx, d.system_id, "cloud-init status through LXD")
    elif status == "error":
        await _fail(ctx, d.system_id, f"cloud-init failed ({' '.join(detail.split())})")
