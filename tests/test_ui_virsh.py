"""The web UI with a libvirt (virsh) host in headless Chromium against a real region, its local
rack and the session's libvirtd over qemu+ssh: the address checked as typed with the region's
rules, a wrong password refused on its field with nothing stored, the host added and its pinned
SSH key shown, its bars as the API counts them, a VM composed from the form and deleted, and a
changed host key accepted after confirming it.  Screenshots go to build/test-artifacts/ui/."""

from __future__ import annotations

import urllib.parse

import pytest
from selenium.webdriver.common.by import By

from common import sshhostkey
from devstack.libvirt import virsh
from tests.conftest import make_user, region_box
from tests.fixtures.browser import Screens, chromium  # noqa: F401  (fixture)
from tests.fixtures.http import Api
from tests.fixtures.lxd import unique
from tests.fixtures.ui_http import UiClient
from tests.test_ui_browser import meter

pytestmark = pytest.mark.slow


def check_address(client: UiClient, host_type: str, address: str):
    query = urllib.parse.urlencode({"type": host_type, "power_address": address})
    return client.request("GET", f"/MAAS/r/address-check?{query}")


def test_add_virsh_host_compose_delete_and_accept_new_key(chromium, lxd_region, libvirt_lab, dsn):  # noqa: F811
    chromium.delete_all_cookies()
    ui, lab = Screens(chromium, lxd_region.url.removesuffix("/MAAS/")), libvirt_lab
    admin = Api(lxd_region.api, make_user(dsn, region_box(lxd_region), "admin", admin=True))
    ui.open("#/kvm/virsh")
    ui.login("admin", "pw-admin")
    ui.wait_text("#host-count", "No virsh hosts")
    ui.press("Add KVM (virsh) host")

    # The address is checked as it is typed, with the region's own rules, on the field.
    name = unique("uivirsh")
    ui.fill("#virsh-name", name)
    ui.fill("#virsh-power_address", "qemu:///system")
    ui.wait_text('.error-text[data-for="power_address"]', "qemu+ssh://user@host")
    ui.fill("#virsh-power_address", lab.address)
    ui.until(lambda: not ui.driver.find_elements(By.CSS_SELECTOR, '.error-text[data-for="power_address"]'),
             what="address accepted")
    # A wrong password: the region's reason on the password field, and no host stored.
    ui.fill("#virsh-password", "not-" + lab.password)
    ui.fill("#virsh-tags", "kvm, ui")
    ui.shot("virsh-01-add-form")
    ui.press("Add KVM host")
    refused = ui.wait_text('.error-text[data-for="password"]', "refused", timeout=60).text
    assert lab.password not in refused
    assert all(h["name"] != name for h in admin.get("vm-hosts/").json())
    ui.shot("virsh-02-wrong-password")

    # The right one: connected, discovered, and the pinned SSH host key shown on Settings.
    ui.fill("#virsh-password", lab.password)
    ui.press("Add KVM host")
    pinned = sshhostkey.fingerprint(lab.sshd.host_public_key)
    ui.wait_text("#pinned-key", pinned, timeout=60)
    host = next(h for h in admin.get("vm-hosts/").json() if h["name"] == name)
    assert host["state"] == "ready" and host["type"] == "virsh" and sorted(host["tags"]) == ["kvm", "ui"]
    hid = host["id"]
    assert ui.find("#set-password").get_attribute("value") == ""  # write-only
    assert ui.find("#set-password").get_attribute("type") == "password"
    assert not ui.driver.find_elements(By.CSS_SELECTOR, "#host-settings [name=project], #host-settings [name=certificate]")
    ui.shot("virsh-03-settings")

    # The list's bars are the API's figures.
    ui.go("#/kvm/virsh")
    ui.wait_text("#host-count", "1 virsh host")
    assert meter(ui, name, "CPU cores") == (host["used"]["cores"],
                                            host["total"]["cores"] * host["cpu_over_commit_ratio"])
    assert meter(ui, name, "Storage") == (host["used"]["local_storage"], host["total"]["local_storage"])
    used_ram, total_ram = meter(ui, name, "RAM")  # general memory: the lab's host has no hugepages
    assert used_ram == host["used"]["memory"] and total_ram == host["total"]["memory"] * host["memory_over_commit_ratio"]
    ui.shot("virsh-04-list")
    ui.go(f"#/kvm/{hid}/storage")
    ui.find(f'.card[data-pool="{lab.pool}"]')
    ui.go(f"#/kvm/{hid}/resources")
    ui.find("#tab-panel h2")
    ui.shot("virsh-05-resources")

    # Compose from the form (VMs only: libvirt offers no containers), then delete from VMs.
    vm = unique("uivvm")
    ui.go(f"#/kvm/{hid}/compose")
    ui.find("#compose")
    assert ui.attributes("#c-type option", "value") == \
        ["virtual-machine"]
    ui.set_value("#c-memory", "1024")
    ui.set_value("#c-disk-size-0", "1")
    ui.set_value("#c-disk-pool-0", lab.pool)
    ui.fill("#c-hostname", vm)
    ui.wait_text("#compose-verdict", "Fits on this host")
    ui.shot("virsh-06-compose")
    ui.press("Compose machine")
    ui.find(f'tr[data-vm="{vm}"]', timeout=120)
    ui.shot("virsh-07-vms")
    machine = next(m for m in admin.get("machines/").json() if m["hostname"] == vm)
    assert machine["pod"]["id"] == hid and vm in virsh("list", "--all", "--name").split()
    on_host = [m for m in admin.get("machines/").json() if m["pod"] and m["pod"]["id"] == hid]
    ui.go("#/kvm/virsh")  # the list counts the host's VMs as the API lists them
    ui.until(lambda: ui.driver.find_element(By.CSS_SELECTOR, f'tr[data-host="{name}"] td:nth-child(3)')
             .text.split()[0] == str(len(on_host)), what="VM count")
    ui.go(f"#/kvm/{hid}/vms")
    ui.until(lambda: ui.driver.find_element(By.CSS_SELECTOR, f'tr[data-vm="{vm}"]')
             .find_element(By.XPATH, ".//button[normalize-space()='Delete']").click() or True, what="Delete")
    ui.driver.switch_to.alert.accept()
    ui.until(lambda: not ui.driver.find_elements(By.CSS_SELECTOR, f'tr[data-vm="{vm}"]'), what="VM row gone")
    assert all(m["hostname"] != vm for m in admin.get("machines/").json())
    assert vm not in virsh("list", "--all", "--name").split()

    # The host's key changes: the badge says so with the fix; the admin accepts the shown key.
    lab.sshd.rotate_host_key()
    shown = sshhostkey.fingerprint(lab.sshd.host_public_key)
    ui.go(f"#/kvm/{hid}/settings")
    ui.press("Refresh host")
    ui.wait_text(".badge.error", "SSH host key changed", timeout=60)
    ui.wait_text(".fix", shown)
    assert "Settings tab" in ui.text_of(".fix")
    ui.wait_text("#shown-key", shown)
    ui.shot("virsh-08-key-changed")
    ui.press("Accept the new key")
    assert shown in ui.driver.switch_to.alert.text
    ui.driver.switch_to.alert.accept()
    ui.wait_text("#pinned-key", shown, timeout=60)
    assert not ui.driver.find_elements(By.CSS_SELECTOR, "#shown-key")
    assert admin.get(f"vm-hosts/{hid}/").json()["state"] == "ready"

    # The address check itself: logged-in users only, 400 naming the field, nothing contacted.
    client = UiClient(ui.root, session=chromium.get_cookie("vmyard_session")["value"])
    assert check_address(client, "virsh", lab.address).status == 200
    bad = check_address(client, "virsh", "qemu+ssh://u:pw@127.0.0.1/system")
    assert bad.status == 400 and "power_pass" in bad.json()["power_address"][0]
    assert check_address(client, "lxd", "qemu+ssh://u@127.0.0.1/system").status == 400
    assert "type" in check_address(client, "xen", "x").json()
    assert check_address(UiClient(ui.root), "virsh", lab.address).status == 401
    assert admin.delete(f"vm-hosts/{hid}/").status == 204
