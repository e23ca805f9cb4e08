"""The deploy service against the real schema, with a fake rack: Deploying at once, the rack's
part in the background, cloud-init's reports, timeouts, release."""

from __future__ import annotations

import base64
import datetime
import email
import gzip
import time
import attrs
import pytest
import pytest_twisted
import yaml
from twisted.internet import defer, reactor, task

from common import hosterrors
from common.models import CloudInitData, HostTarget, ImageRef
from region.db import events, images as image_rows, machines
from region.db.images import BootResource, NewResource, ResourceFile
from region.db.pool import run_sync
from region.services import compose, deploy, ownership
from region.services.auth import OAuthCredentials
from region.services.compose_request import ComposeFields
from region.services.errors import Conflict, FieldError, Forbidden, NotAuthenticated
from tests.fixtures.services import service_region  # noqa: F401  (fixture)
from tests.test_compose_race import make_ready_host
from tests.test_services_compose import FakeRack as ComposeRack

FINGERPRINT = "f" * 64


def resource(resource_id: int, name: str, *, architecture: str = "amd64/generic", filetype: str = "lxd",
             state: str = "complete") -> BootResource:
    now = datetime.datetime.now(datetime.timezone.utc)
    return BootResource(resource_id, name, architecture, "Uploaded", name, "20260101", "uploaded", state,
                        FINGERPRINT, 10, now, now, (ResourceFile(resource_id, "root", filetype, 10, "0" * 64, 10),))


@attrs.define
class DeployRack(ComposeRack):
    """Also answers the deploy jobs at once; `deploy_error` makes DeployMachine fail."""

    deploy_error: Exception | None = None
    cloud_init: tuple[str, str] = ("running", "status: running")
    jobs: list[tuple] = attrs.field(factory=list)
    gate: defer.Deferred | None = None  # DeployMachine waits for it when set

    async def deploy(self, target: HostTarget, instance_name: str, image: ImageRef, cloud_init: CloudInitData,
                     profiles: list[str], progress_id: str | None = None) -> str:
        self.jobs.append(("deploy", instance_name, image, cloud_init, profiles))
        if self.gate is not None:
            await self.gate
        if self.deploy_error is not None:
            raise self.deploy_error
        return "on"

    async def erase(self, target: HostTarget, instance_name: str, profiles: list[str]) -> None:
        self.jobs.append(("erase", instance_name, profiles))

    async def power(self, target: HostTarget, instance_name: str, action: str) -> str:
        self.jobs.append(("power", instance_name, action))
        return "off"

    async def cloud_init_status(self, target: HostTarget, instance_name: str) -> tuple[str, str]:
        self.jobs.append(("cloud-init status", instance_name))
        return self.cloud_init


@pytest.fixture
def rack(service_region):
    service_region.hosts = DeployRack(service_region.db)
    return service_region.hosts


@pytest.fixture
def lab(service_region, rack, tmp_path):
    """A composed machine allocated to alice, an image for it, and alice's SSH key."""
    dsn = service_region.dsn
    host_id = make_ready_host(dsn, tmp_path, cores=8, cpu_ratio=1.0)
    alice = service_region.as_user("alice", admin=False)
    made = pytest_twisted.blockon(defer.ensureDeferred(compose.compose(
        service_region.as_user("admin"), str(host_id), ComposeFields(hostname="web1", cores="1", storage="root:5"))))

    def setup_thd(cur):
        cur.execute("UPDATE machines SET status = 'allocated', owner_id = %s WHERE id = %s", (alice.actor.id, made.id))
        cur.execute("INSERT INTO sshkeys (user_id, key, fingerprint) VALUES (%s, 'ssh-ed25519 AAAA alice', 'fp')",
                    (alice.actor.id,))
        new = NewResource("custom/tiny", "amd64/generic", "tiny", "lxd", 10, "0" * 64)
        image = image_rows.create_thd(cur, new, version="20260101", filename="lxd.tar")
        image_rows.finish_thd(cur, image.id, state="complete", lxd_fingerprint=FINGERPRINT, lxd_size=10)
        cur.execute("UPDATE vm_hosts SET deploy_profiles = '{proxy}' WHERE id = %s", (host_id,))

    run_sync(dsn, setup_thd)
    return alice, made


def machine(service_region, system_id: str) -> machines.Machine:
    return run_sync(service_region.dsn, machines.get_thd, system_id)


async def settle() -> None:
    await defer.DeferredList(list(deploy._running))


def sign(token: dict, nonce: str = "n1") -> OAuthCredentials:
    return OAuthCredentials(token["consumer_key"], token["token_key"], f"&{token['token_secret']}", int(time.time()),
                            nonce)


async def deployed(ctx, made: machines.Machine, rack: DeployRack) -> dict:
    """Deploy `made`, let the rack's part end, and return the webhook settings the machine got."""
    await deploy.deploy(ctx, made.system_id, deploy.DeployInputs("tiny"))
    await settle()
    user_data = email.message_from_string(rack.jobs[-1][3].user_data)
    ours = next(p for p in user_data.walk() if not p.is_multipart())
    return yaml.safe_load(ours.get_payload(decode=True))["reporting"]["maas"]


@pytest_twisted.ensureDeferred
async def test_deploy_is_deploying_at_once_then_the_rack_gets_image_cloud_init_and_profiles(service_region, rack, lab):
    alice, made = lab
    rack.gate = defer.Deferred()
    users = base64.b64encode(gzip.compress(b"#cloud-config\nruncmd: [touch /x]\n")).decode()
    views = await deploy.deploy(alice, made.system_id, deploy.DeployInputs("tiny", users))
    shown = views.machines[0].machine
    assert shown.status == "deploying" and "rebuilding the root disk" in shown.status_message
    while not rack.jobs:  # the background part gathers its data first
        await task.deferLater(reactor, 0.01, lambda: None)
    _, name, image, cloud_init, profiles = rack.jobs[-1]
    assert name == made.instance_name and profiles == ["proxy"]
    assert image.fingerprint == FINGERPRINT and image.url.endswith(f"images/{FINGERPRINT}") and image.token
    assert "ssh-ed25519 AAAA alice" in cloud_init.user_data and "runcmd" in cloud_init.user_data
    assert f"metadata/status/{made.system_id}" in cloud_init.user_data
    assert yaml.safe_load(cloud_init.network_config)["version"] == 2
    rack.gate.callback(None)
    await settle()
    after = machine(service_region, made.system_id)
    assert (after.status, after.power_state) == ("deploying", "on") and "waiting for cloud-init" in after.status_message


@pytest_twisted.ensureDeferred
async def test_lxd_refusing_to_start_is_failed_deployment_with_its_reason(service_region, rack, lab):
    alice, made = lab
    rack.deploy_error = hosterrors.DriverError("LXD could not start 'web1': KVM support is missing")
    await deploy.deploy(alice, made.system_id, deploy.DeployInputs("custom/tiny"))
    await settle()
    failed = machine(service_region, made.system_id)
    assert failed.status == "failed_deployment" and "KVM support is missing" in failed.status_message

    # Nothing is lost: the instance is still there to be erased, and the machine goes back to Ready.
    released = await ownership.release(alice, made.system_id)
    assert released.views.machines[0].machine.status == "ready" and rack.jobs[-1][0] == "erase"

@pytest_twisted.ensureDeferred
async def test_bad_requests_change_nothing(service_region, rack, lab):
    alice, made = lab
    bob = service_region.as_user("bob", admin=False)
    with pytest.raises(Forbidden):
        await deploy.deploy(bob, made.system_id, deploy.DeployInputs("tiny"))
    for inputs, field in [(deploy.DeployInputs("jammy"), "distro_series"), (deploy.DeployInputs(""), "distro_series"),
                          (deploy.DeployInputs("tiny", base64.b64encode(b"\x1f\x8bxx").decode()), "user_data"),
                          (deploy.DeployInputs("tiny", "plain words"), "user_data")]:
        with pytest.raises(FieldError) as e:
            await deploy.deploy(alice, made.system_id, inputs)
        assert e.value.field == field, inputs
    assert machine(service_region, made.system_id).status == "allocated" and rack.jobs == []


@pytest_twisted.ensureDeferred
async def test_cloud_init_reports_drive_the_status(service_region, rack, lab):
    alice, made = lab
    token = await deployed(alice, made, rack)
    event = deploy.StatusEvent("start", "modules-config", None, "running config modules")
    await deploy.report_status(alice, made.system_id, sign(token), event)
    assert "start modules-config" in machine(service_region, made.system_id).status_message
    with pytest.raises(NotAuthenticated, match="nonce"):
        await deploy.report_status(alice, made.system_id, sign(token), event)
    with pytest.raises(NotAuthenticated):
        await deploy.report_status(alice, "other", sign(token, "n2"), event)
    bad = attrs.evolve(sign(token, "n3"), signature="&wrong")
    with pytest.raises(NotAuthenticated):
        await deploy.report_status(alice, made.system_id, bad, event)

    done = deploy.StatusEvent("finish", "modules-final", "SUCCESS", "finished")
    await deploy.report_status(alice, made.system_id, sign(token, "n4"), done)
    assert machine(service_region, made.system_id).status == "deployed"
    # A late failure report does not undo a finished deployment.
    await deploy.report_status(alice, made.system_id, sign(token, "n5"),
                               deploy.StatusEvent("finish", "x", "FAIL", "late"))
    assert machine(service_region, made.system_id).status == "deployed"

    released = await ownership.release(alice, made.system_id)
    back = released.views.machines[0].machine
    assert (back.status, back.owner_id, back.status_message) == ("ready", None, "")
    assert rack.jobs[-1] == ("erase", made.instance_name, ["proxy"])
    with pytest.raises(NotAuthenticated):  # the machine's token went with the release
        await deploy.report_status(alice, made.system_id, sign(token, "n6"), done)
    types = [e.type for e in run_sync(service_region.dsn, events.list_thd, object_type="machine")]
    assert {"MACHINE_DEPLOYING", "MACHINE_DEPLOYED", "MACHINE_RELEASED"} <= set(types)


@pytest_twisted.ensureDeferred
async def test_a_failure_event_fails_the_deployment(service_region, rack, lab):
    alice, made = lab
    token = await deployed(alice, made, rack)
    await deploy.report_status(alice, made.system_id, sign(token),
                               deploy.StatusEvent("finish", "modules-final/config-scripts-user", "FAIL", "exit 1"))
    failed = machine(service_region, made.system_id)
    assert failed.status == "failed_deployment"
    assert failed.status_message == "cloud-init modules-final/config-scripts-user failed: exit 1"
    with pytest.raises(Conflict):
        await deploy.deploy(alice, made.system_id, deploy.DeployInputs("tiny"))


@pytest_twisted.ensureDeferred
async def test_deploys_time_out_and_containers_are_asked_through_lxd(service_region, rack, lab):
    alice, made = lab
    await deployed(alice, made, rack)
    run_sync(service_region.dsn, lambda cur: cur.execute(
        "UPDATE machines SET deploy_started = now() - interval '2 minutes', instance_type = 'container'"
        " WHERE id = %s", (made.id,)))
    await deploy.check_deploys(alice)
    assert rack.jobs[-1] == ("cloud-init status", made.instance_name)
    assert machine(service_region, made.system_id).status == "deploying"
    rack.cloud_init = ("done", "status: done")
    await deploy.check_deploys(alice)
    assert machine(service_region, made.system_id).status == "deployed"

    run_sync(service_region.dsn, lambda cur: cur.execute(
        "UPDATE machines SET status = 'deploying', deploy_started = now() - interval '2 hours' WHERE id = %s",
        (made.id,)))
    await deploy.check_deploys(alice)
    timed_out = machine(service_region, made.system_id)
    assert timed_out.status == "failed_deployment" and "timed out" in timed_out.status_message


@pytest_twisted.ensureDeferred
async def test_without_distro_series_the_regions_default_is_deployed(service_region, rack, lab):
    alice, made = lab
    service_region.config = attrs.evolve(service_region.config, default_distro_series="tiny")
    views = await deploy.deploy(alice, made.system_id, deploy.DeployInputs(""))
    await settle()
    assert views.machines[0].allocation.distro_series == "tiny"
    assert views.machines[0].machine.status_message == "Deploying custom/tiny: rebuilding the root disk"


def held_copy(service_region, host_id: int) -> list[tuple[str, int | None]]:
    held = run_sync(service_region.dsn, image_rows.held_by_hosts_thd).get(host_id, [])
    return [(i.name, i.copying) for i in held]


async def copy_reported(service_region, ctx, made: machines.Machine, stage: str, percent: int, shown: list) -> None:
    """Deliver a DeployProgress report and wait until the host's images show `shown`."""
    deploy.copy_progress(ctx, made.system_id, stage, percent)
    for _ in range(500):
        if held_copy(service_region, made.host_id) == shown:
            return
        await task.deferLater(reactor, 0.01, lambda: None)
    raise AssertionError(f"the host's images are {held_copy(service_region, made.host_id)}, not {shown}")


async def rack_called(rack: DeployRack) -> None:
    while not rack.jobs:  # the background part gathers its data first
        await task.deferLater(reactor, 0.01, lambda: None)


@pytest_twisted.ensureDeferred
async def test_the_racks_copy_progress_shows_on_the_machine_and_the_host_while_the_rack_step_runs(
        service_region, rack, lab):
    alice, made = lab
    rack.gate = defer.Deferred()
    await deploy.deploy(alice, made.system_id, deploy.DeployInputs("tiny"))
    await rack_called(rack)
    await copy_reported(service_region, alice, made, "fetching", 45, [("custom/tiny", 45)])
    message = machine(service_region, made.system_id).status_message
    assert message.startswith("Copying image custom/tiny to host ") and message.endswith(
        ": 45% (fetching it from the region)"), message
    await copy_reported(service_region, alice, made, "importing", 250, [("custom/tiny", 100)])  # clamped

    rack.gate.callback(None)
    await settle()
    assert held_copy(service_region, made.host_id) == [("custom/tiny", None)]  # the host holds it
    deploy.copy_progress(alice, made.system_id, "importing", 99)  # late: the rack step is over
    await settle()
    after = machine(service_region, made.system_id)
    assert after.status_message.startswith("Booting") and held_copy(service_region, made.host_id) == [
        ("custom/tiny", None)]


@pytest_twisted.ensureDeferred
async def test_a_copy_that_fails_leaves_no_image_on_the_host(service_region, rack, lab):
    alice, made = lab
    rack.gate, rack.deploy_error = defer.Deferred(), hosterrors.DriverError("the host's disk is full")
    await deploy.deploy(alice, made.system_id, deploy.DeployInputs("tiny"))
    await rack_called(rack)
    await copy_reported(service_region, alice, made, "importing", 60, [("custom/tiny", 60)])
    rack.gate.callback(None)
    await settle()
    assert machine(service_region, made.system_id).status == "failed_deployment"
    assert held_copy(service_region, made.host_id) == []
