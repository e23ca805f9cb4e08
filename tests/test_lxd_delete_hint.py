"""Deleting a VM the region knows to have only its root disk (DeleteVM's `root_disk_only`),
against the private LXD: no read of the instance first, and every case that needs one (a VM
LXD will not delete as it is, a missing VM) still gets the full path."""

from __future__ import annotations

import pylxd.client
import pytest

from rack.drivers.base import DriverError
from rack.drivers.lxd import LXDDriver
from tests.fixtures.lxd import lxc_missing
from tests.test_lxd_driver import (  # noqa: F401 (fixtures)
    add_volume, driver, in_project, init_vm, trusted, vm_project)


@pytest.fixture
def requests_sent(monkeypatch):
    """(method, path) of every request pylxd's API nodes send."""
    sent = []
    for method in ("get", "delete", "put", "post"):
        original = getattr(pylxd.client._APINode, method)

        def recording(node, *args, _method=method, _original=original, **kwargs):
            sent.append((_method.upper(), node._api_endpoint.split("/1.0", 1)[-1]))
            return _original(node, *args, **kwargs)

        monkeypatch.setattr(pylxd.client._APINode, method, recording)
    return sent


def test_a_stopped_vm_with_its_root_disk_only_is_deleted_unread(lxd_server, driver, trusted, vm_project,
                                                                  requests_sent):
    init_vm(lxd_server, vm_project, "vm1")
    assert driver.delete_vm(in_project(trusted, vm_project), "vm1", root_disk_only=True) == []
    assert lxc_missing(lxd_server, f"/1.0/instances/vm1?project={vm_project}")
    instance_requests = [r for r in requests_sent if r[1].startswith("/instances")]
    assert instance_requests == [("DELETE", "/instances/vm1")]


def test_a_missing_vm_gets_the_same_warning_with_the_hint(lxd_server, driver, trusted, vm_project):
    warnings = driver.delete_vm(in_project(trusted, vm_project), "nosuchvm", root_disk_only=True)
    assert len(warnings) == 1 and "'nosuchvm'" in warnings[0] and "not found" in warnings[0]


def test_a_refused_delete_takes_the_full_path(lxd_server, driver, trusted, vm_project, requests_sent, monkeypatch):
    """LXD refuses to delete a running VM (400 "Instance is running"); VMs cannot run here, so
    the first DELETE is refused as LXD would: the VM is then read and deleted as without the
    hint, its own custom volume with it."""
    init_vm(lxd_server, vm_project, "vm1")
    add_volume(lxd_server, vm_project, "own", "16MiB")
    lxd_server.lxc("config", "device", "add", "vm1", "data", "disk", "pool=default", "source=own",
                   "--project", vm_project)
    real_run, refused = LXDDriver._run, []

    def refuse_first_delete(self, client, what, method, **kwargs):
        if not refused and what.startswith("cannot delete LXD VM"):
            refused.append(what)
            raise DriverError(f"{what}: Instance is running")
        return real_run(self, client, what, method, **kwargs)

    monkeypatch.setattr(LXDDriver, "_run", refuse_first_delete)
    assert driver.delete_vm(in_project(trusted, vm_project), "vm1", root_disk_only=True) == []
    assert refused and lxc_missing(lxd_server, f"/1.0/instances/vm1?project={vm_project}")
    assert lxc_missing(lxd_server, f"/1.0/storage-pools/default/volumes/custom/own?project={vm_project}")
    assert ("GET", "/instances/vm1") in requests_sent


def test_a_failed_delete_operation_is_reported_not_retried(lxd_server, driver, trusted, vm_project):
    """LXD accepts the delete of a protected VM and its operation fails: that error is the answer."""
    init_vm(lxd_server, vm_project, "vm1", "-c", "security.protection.delete=true")
    try:
        with pytest.raises(DriverError) as e:
            driver.delete_vm(in_project(trusted, vm_project), "vm1", root_disk_only=True)
        assert "cannot delete LXD VM 'vm1'" in str(e.value) and "protected" in str(e.value).lower()
        assert not lxc_missing(lxd_server, f"/1.0/instances/vm1?project={vm_project}")
    finally:
        lxd_server.lxc("config", "unset", "vm1", "security.protection.delete", "--project", vm_project)


def test_a_volume_attached_behind_the_regions_back_is_left_not_deleted(lxd_server, driver, trusted, vm_project):
    """The region's record is stale (a custom volume was attached since its last refresh): the
    VM goes, the volume stays (nothing is deleted that the region did not know of)."""
    init_vm(lxd_server, vm_project, "vm1")
    add_volume(lxd_server, vm_project, "attached", "16MiB")
    lxd_server.lxc("config", "device", "add", "vm1", "data", "disk", "pool=default", "source=attached",
                   "--project", vm_project)
    assert driver.delete_vm(in_project(trusted, vm_project), "vm1", root_disk_only=True) == []
    assert lxc_missing(lxd_server, f"/1.0/instances/vm1?project={vm_project}")
    assert not lxc_missing(lxd_server, f"/1.0/storage-pools/default/volumes/custom/attached?project={vm_project}")
