"""The web UI in headless Chromium against a real region, rack, PostgreSQL and LXD: add a host
through the wizard, read its bars on the list, change overcommit, compose a VM, find it in the
NUMA view, delete it; log in and out.  Screenshots of each screen go to build/test-artifacts/ui/."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from region.db.pool import run_sync
from tests.conftest import make_user, region_box
from tests.fixtures.browser import Screens, chromium  # noqa: F401  (fixture)
from tests.fixtures.daemons import free_port
from tests.fixtures.http import Api
from tests.fixtures.images import rootfs_tgz
from tests.fixtures.lxd import lxc_missing, unique
from tests.fixtures.ui_http import UiClient

pytestmark = pytest.mark.slow


@pytest.fixture
def screens(chromium, lxd_region) -> Screens:  # noqa: F811
    chromium.delete_all_cookies()
    return Screens(chromium, lxd_region.url.removesuffix("/MAAS/"))


@pytest.fixture
def admin(lxd_region, dsn) -> Api:
    return Api(lxd_region.api, make_user(dsn, region_box(lxd_region), "admin", admin=True))


def meter(ui: Screens, host: str, name: str) -> tuple[float, float]:
    """(used, total) of a meter in the host's row, read afresh (live updates redraw rows)."""
    def read():
        el = ui.driver.find_element(By.CSS_SELECTOR, f'tr[data-host="{host}"] [data-meter="{name}"]')
        return float(el.get_attribute("data-used")), float(el.get_attribute("data-total"))
    return ui.until(read, what=f"{name} meter of {host}")


def test_add_host_overcommit_compose_numa_delete(screens, admin, lxd_server, lxd_region):
    ui = screens
    ui.open()
    ui.find("#login-username")
    ui.shot("01-login")
    ui.login("admin", "pw-admin")
    ui.wait_text("#host-count", "No LXD hosts")
    ui.shot("02-kvm-list-empty")

    # The wizard: details, then the generated certificate, then trust added on the LXD side.
    name, project = unique("uihost"), unique("uiproj")
    ui.press("Add LXD host")
    ui.fill("#add-name", name)
    ui.fill("#add-power_address", f"127.0.0.1:{free_port()}")  # nothing listens there
    ui.fill("#add-project", project)
    ui.press("Next")
    # The region's reason sits on the field at fault; the wizard keeps what was typed.
    ui.find('.error-text[data-for="power_address"]')
    assert ui.find("#add-name").get_attribute("value") == name
    ui.fill("#add-power_address", lxd_server.address)
    ui.shot("03-wizard-details")
    ui.press("Next")
    command = ui.text_of("#cmd-modern")
    assert f"/MAAS/vmhost-certificate/{name} | lxc config trust add -" in command
    assert "lxc config trust add vmyard.crt" in ui.text_of("#cmd-lxd50")
    cert = ui.find("#cert-pem").get_attribute("value")
    assert cert.startswith("-----BEGIN CERTIFICATE-----")
    ui.wait_text("#trust-status", "Waiting")
    # Leaving and coming back keeps the wizard where it was; meanwhile the list shows the host
    # awaiting trust, with the command that fixes it.
    ui.go("#/kvm/lxd")
    ui.wait_text(f'tr[data-host="{name}"] .badge', "awaiting trust")
    assert "lxc config trust add" in ui.text_of(f'tr[data-host="{name}"] .fix')
    ui.go("#/kvm/add-lxd")
    assert ui.find("#cert-pem").get_attribute("value") == cert
    ui.shot("04-wizard-trust")
    lxd_server.trust_add(cert, name)
    ui.wait_text("#add-done", "Connected")
    ui.shot("05-wizard-connected")

    host = next(h for h in admin.get("vm-hosts/").json() if h["name"] == name)
    assert host["state"] == "ready" and host["project"] == project

    # The list shows the API's figures.
    ui.go("#/kvm/lxd")
    assert meter(ui, name, "CPU cores") == (host["used"]["cores"],
                                            host["total"]["cores"] * host["cpu_over_commit_ratio"])
    assert meter(ui, name, "Storage") == (host["used"]["local_storage"], host["total"]["local_storage"])
    used_ram, total_ram = meter(ui, name, "RAM")
    assert used_ram == 0 and 0 < total_ram <= host["total"]["memory"]
    ui.shot("06-kvm-list")
    ui.fill("#host-filter", "no-such-host")
    ui.wait_text("#host-count", "No LXD hosts")
    ui.fill("#host-filter", name[:6])
    ui.find(f'tr[data-host="{name}"]')
    # A change made elsewhere (here: through the API) appears without a reload.
    assert admin.post(f"vm-hosts/{host['id']}/", data={"op": "add_tag", "tag": "live-tag"}).status == 200
    ui.wait_text(f'tr[data-host="{name}"]', "live-tag", timeout=15)

    # Settings: overcommit 0.5 shows the virtual capacity live; saving changes the list's bar.
    hid, cores = host["id"], host["total"]["cores"]
    ui.go(f"#/kvm/{hid}/settings")
    ui.find("#host-settings")
    ui.set_value("#cpu_over_commit_ratio-slider", "0.5")
    assert ui.find("#cpu_over_commit_ratio-number").get_attribute("value") == "0.5"
    ui.wait_text("#cpu_over_commit_ratio-result", f"{cores} cores × 0.5 = {cores * 0.5:g} virtual cores")
    ui.set_value("#cpu_over_commit_ratio-number", "2")
    ui.wait_text("#cpu_over_commit_ratio-result", f"{cores} cores × 2 = {cores * 2} virtual cores")
    ui.shot("07-host-settings")
    ui.press("Save changes")
    ui.until(lambda: admin.get(f"vm-hosts/{hid}/").json()["cpu_over_commit_ratio"] == 2.0, what="ratio saved")
    ui.go("#/kvm/lxd")
    ui.until(lambda: meter(ui, name, "CPU cores")[1] == cores * 2, what="bar total")

    # Compose: the form checks as you type, then the region composes the VM for real.
    ui.go(f"#/kvm/{hid}/compose")
    ui.find("#compose")
    ui.set_value("#c-cores", str(cores * 2 + 1))
    ui.wait_text("#compose-problems", f"only {cores * 2} free")
    ui.set_value("#c-cores", "1")
    ui.set_value("#c-memory", "1024")
    ui.set_value("#c-disk-size-0", "1")
    ui.fill("#c-hostname", "uivm")
    ui.until(lambda: ui.text_of("#compose-problems") == "", what="no problems left")
    ui.wait_text("#compose-verdict", "Fits on this host")
    assert all(m["hostname"] != "uivm" for m in admin.get("machines/").json())  # a dry run keeps nothing
    ui.shot("08-compose")
    ui.press("Compose machine")
    ui.find('tr[data-vm="uivm"]', timeout=120)
    ui.shot("09-host-vms")
    vm = next(m for m in admin.get("machines/").json() if m["hostname"] == "uivm")
    assert vm["pod"]["id"] == hid and not lxc_missing(lxd_server, f"/1.0/instances/uivm?project={project}")

    # The region's own refusal is shown when the form cannot know: the name is taken.
    ui.go(f"#/kvm/{hid}/compose")
    ui.find("#compose")
    ui.set_value("#c-disk-size-0", "1")
    ui.set_value("#c-memory", "1024")
    ui.fill("#c-hostname", "uivm")
    # The region's dry run explains, as the user types, what the form cannot know.
    ui.wait_text("#compose-verdict", "Does not fit: hostname")
    ui.press("Compose machine")
    ui.wait_text("#compose-problems", "The region refused it")
    assert "uivm" in ui.text_of('.error-text[data-for="hostname"]')

    # Resources: the NUMA view lists the VM on its node.
    ui.go(f"#/kvm/{hid}/resources")
    ui.click("#numa-toggle")
    node = ui.until(lambda: ui.driver.find_element(By.CSS_SELECTOR, '#numa [data-vm="uivm"]')
                    .find_element(By.XPATH, "ancestor::div[@data-numa]").get_attribute("data-numa"), what="NUMA card")
    assert int(node) in vm["numa_nodes"]
    ui.shot("10-host-resources-numa")
    # Storage: a second pool appears after a refresh and can be made the default.
    pool = unique("uipool")
    lxd_server.lxc("storage", "create", pool, "dir")
    try:
        ui.go(f"#/kvm/{hid}/storage")
        ui.press("Refresh host")
        ui.press("Set as default", within=f'.card[data-pool="{pool}"]')
        ui.until(lambda: admin.get(f"vm-hosts/{hid}/").json()["default_storage_pool"] == pool, what="default pool")
        ui.wait_text(f'.card[data-pool="{pool}"]', "default")
        ui.shot("11-host-storage")
    finally:
        admin.put(f"vm-hosts/{hid}/", data={"default_storage_pool": "default"})
        lxd_server.lxc("storage", "delete", pool)
    ui.go("#/machines")
    ui.find('tr[data-machine="uivm"]')
    ui.shot("12-machines")
    ui.go("#/images")
    ui.find("#upload")
    ui.shot("13-images")

    # Delete the VM from the host's VMs tab.
    ui.go(f"#/kvm/{hid}/vms")
    ui.until(lambda: ui.driver.find_element(By.CSS_SELECTOR, 'tr[data-vm="uivm"]')
             .find_element(By.XPATH, ".//button[normalize-space()='Delete']").click() or True, what="Delete")
    ui.driver.switch_to.alert.accept()
    ui.until(lambda: not ui.driver.find_elements(By.CSS_SELECTOR, 'tr[data-vm="uivm"]'), what="VM row gone")
    assert all(m["hostname"] != "uivm" for m in admin.get("machines/").json())
    assert lxc_missing(lxd_server, f"/1.0/instances/uivm?project={project}")

    # A second host with a trust password: connected at once, the password never stored.
    ui.go("#/kvm/add-lxd")
    other = unique("uipw")
    ui.fill("#add-name", other)
    ui.fill("#add-power_address", lxd_server.address)
    ui.fill("#add-project", unique("uiproj"))
    ui.click("#auth-password")
    ui.fill("#add-password", lxd_server.trust_password)
    ui.press("Next")
    ui.wait_text("#add-done", "Connected")
    assert next(h for h in admin.get("vm-hosts/").json() if h["name"] == other)["state"] == "ready"
    # Two projects on one LXD server read as one block on the list.
    ui.go("#/kvm/lxd")
    ui.find(f'tr[data-host="{other}"]')
    assert ui.attributes("tr.same-server", "data-host") == [other]  # sorted by name, within the server
    ui.shot("06b-kvm-list-grouped")

    ui.click("#logout")
    ui.find("#login-username")
    assert admin.get("vm-hosts/").status == 200  # API keys are untouched by the UI's logout


def test_image_upload_in_chunks_and_session_end(chromium, region, dsn, tmp_path):  # noqa: F811
    chromium.delete_all_cookies()
    ui = Screens(chromium, region.url.removesuffix("/MAAS/"))
    make_user(dsn, region_box(region), "imgadmin", admin=True)
    ui.open("#/images")
    ui.login("imgadmin", "pw-imgadmin")
    ui.find("#upload")
    content = rootfs_tgz(tmp_path / "root.tgz", random_bytes=5 * 1024 * 1024)  # two 4 MiB chunks
    ui.fill("#img-name", "custom/uitiny")
    ui.find("#img-file").send_keys(str(tmp_path / "root.tgz"))
    ui.press("Upload")
    ui.wait_text("#upload-status", "Uploaded", timeout=60)
    assert ui.find("#upload-progress").get_attribute("value") == "100"
    ui.wait_text('tr[data-image="custom/uitiny"]', "complete")
    ui.shot("14-images-uploaded")
    api = UiClient(ui.root, session=chromium.get_cookie("vmyard_session")["value"])
    (resource,) = api.request("GET", "/MAAS/api/2.0/boot-resources/").json()
    assert next(iter(resource["sets"].values()))["size"] == len(content)

    ui.go("#/kvm/999999")  # a host that is not there (deleted meanwhile, or a stale link)
    ui.wait_text("main", "Could not load this page")

    # A user who is not an administrator is offered no admin action.
    make_user(dsn, region_box(region), "imguser", admin=False)
    ui.click("#logout")
    ui.login("imguser", "pw-imguser")
    ui.go("#/kvm/lxd")
    ui.wait_text("#host-count", "No LXD hosts")
    assert not ui.driver.find_elements(By.XPATH, "//a[normalize-space()='Add LXD host']")
    assert ui.text_of("#who") == "imguser"

    # The session ends (expired here): the next call sends the user back to the login form.
    run_sync(dsn, lambda cur: cur.execute("UPDATE ui_sessions SET expires = now()"))
    ui.go("#/machines")
    ui.wait_text("#login-error", "session has ended")
    ui.shot("15-session-ended")
