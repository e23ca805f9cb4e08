"""The pure cloud-init builders of a deploy (region/services/cloudinit.py) and the rack's pure
rebuild rules (rack/drivers/lxd_deploy.py)."""

from __future__ import annotations

import base64
import email
import gzip
import ipaddress

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from common.models import CloudInitData
from rack.drivers import lxd_deploy
from region.services import cloudinit
from region.services.deploy import choose_image
from tests.test_deploy_service import resource

IDENTITY = cloudinit.Identity("web1", "web1.maas", ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJx owner@laptop"])
WEBHOOK = cloudinit.Webhook("http://127.0.0.1:5240/MAAS/metadata/status/abc123", "abc123-x", "tk", "secret")


def parts(document: str) -> list[email.message.Message]:
    message = email.message_from_string(document)
    assert message.get_content_type() == "multipart/mixed"
    return [p for p in message.walk() if not p.is_multipart()]


def text(part: email.message.Message) -> str:
    return part.get_payload(decode=True).decode()


# -- user_data as op=deploy takes it -----------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=300).filter(lambda t: "\x00" not in t))
def test_user_data_is_base64_of_text_or_gzip_or_the_text_itself(data):
    encoded = data.encode()
    assert cloudinit.decode_user_data(base64.b64encode(encoded).decode()) == data
    assert cloudinit.decode_user_data(base64.b64encode(gzip.compress(encoded)).decode()) == data  # Juju


def test_user_data_that_is_not_base64_is_taken_as_text():
    assert cloudinit.decode_user_data("#cloud-config\nruncmd: [ls]\n") == "#cloud-config\nruncmd: [ls]\n"


@pytest.mark.parametrize("raw, why", [
    (base64.b64encode(gzip.compress(b"#cloud-config\n")[:10] + b"\xff" * 20).decode(), "cannot be decompressed"),
    (base64.b64encode(gzip.compress(b"#cloud-config\n")[:-6]).decode(), "truncated"),
    (base64.b64encode(b"\xff\xfe\x00binary").decode(), "neither text"),
])
def test_bad_gzip_or_binary_user_data_is_refused(raw, why):
    with pytest.raises(cloudinit.BadUserData, match=why):
        cloudinit.decode_user_data(raw)


def test_a_gzip_bomb_is_refused_without_inflating_it_all():
    bomb = base64.b64encode(gzip.compress(b"#" * (cloudinit.MAX_USER_DATA + 10))).decode()
    with pytest.raises(cloudinit.BadUserData, match="larger than"):
        cloudinit.decode_user_data(bomb)


# -- the multipart ---------------------------------------------------------------------------------

def test_vmyard_part_comes_first_then_the_users_cloud_config_merged_by_appending():
    users = "#cloud-config\nssh_authorized_keys: [ssh-rsa AAAAB3 user@x]\nhostname: other\n"
    ours, theirs = parts(cloudinit.user_data(IDENTITY, WEBHOOK, users))
    config = yaml.safe_load(text(ours))
    assert text(ours).startswith("#cloud-config\n") and ours["Merge-Type"] is None
    assert config["hostname"] == "web1" and config["fqdn"] == "web1.maas"
    assert config["ssh_authorized_keys"] == IDENTITY.ssh_keys
    assert config["reporting"] == {"maas": {"type": "webhook", "endpoint": WEBHOOK.endpoint,
                                            "consumer_key": "abc123-x", "token_key": "tk", "token_secret": "secret"}}
    assert theirs.get_content_type() == "text/cloud-config" and text(theirs) == users
    # Lists append (the user's keys join the owner's), dicts keep what vmyard set.
    assert theirs["Merge-Type"] == "list(append)+dict(no_replace,recurse_list)+str()"


@pytest.mark.parametrize("users, content_type", [
    ("#!/bin/sh\necho hi > /tmp/x\n", "text/x-shellscript"),
    ("#cloud-boothook\necho early\n", "text/cloud-boothook"),
    ("#include\nhttp://example.invalid/x\n", "text/x-include-url"),
])
def test_other_formats_become_a_part_of_their_own_type(users, content_type):
    _, theirs = parts(cloudinit.user_data(IDENTITY, WEBHOOK, users))
    assert theirs.get_content_type() == content_type and text(theirs) == users and theirs["Merge-Type"] is None


def test_a_users_multipart_is_flattened_keeping_its_merge_types():
    users = ("Content-Type: multipart/mixed; boundary=XX\nMIME-Version: 1.0\n\n--XX\n"
             "Content-Type: text/cloud-config\nMerge-Type: dict(replace)+list(prepend)\n\n#cloud-config\nruncmd: [a]\n"
             "--XX\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho b\n--XX--\n")
    _, config, script = parts(cloudinit.user_data(IDENTITY, WEBHOOK, users))
    assert config["Merge-Type"] == "dict(replace)+list(prepend)" and "runcmd: [a]" in text(config)
    assert script.get_content_type() == "text/x-shellscript" and "echo b" in text(script)


def test_no_user_data_gives_vmyards_part_alone():
    assert len(parts(cloudinit.user_data(IDENTITY, WEBHOOK, ""))) == 1


def test_unknown_formats_are_refused():
    with pytest.raises(cloudinit.BadUserData, match="cloud-config"):
        cloudinit.user_parts("just some words")


# -- network-config ----------------------------------------------------------------------------------

ADDRESSES = st.builds(lambda host, prefix: ipaddress.ip_interface(f"10.{host >> 16 & 255}.{host >> 8 & 255}."
                                                                    f"{host & 255}/{prefix}"),
                      st.integers(1, 2**24 - 2), st.integers(8, 30))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**24 - 1), st.lists(ADDRESSES, max_size=3), st.booleans()),
                min_size=1, max_size=4))
def test_network_config_matches_each_nic_by_mac_with_its_addresses(nics):
    configs = []
    for i, (mac_tail, addresses, with_gateway) in enumerate(nics):
        mac = "00:16:3E:%02X:%02X:%02X" % (mac_tail >> 16, mac_tail >> 8 & 255, mac_tail & 255)
        configs.append(cloudinit.NicConfig(f"eth{i}", mac, [
            cloudinit.NicAddress(str(a.ip), str(a.network), str(next(a.network.hosts())) if with_gateway else None,
                                 ["10.0.0.53"]) for a in addresses]))
    document = yaml.safe_load(cloudinit.network_config(configs))
    assert document["version"] == 2 and list(document["ethernets"]) == [c.name for c in configs]
    for config in configs:
        entry = document["ethernets"][config.name]
        assert entry["match"] == {"macaddress": config.mac.lower()} and entry["set-name"] == config.name
        if not config.addresses:
            assert entry == {"match": entry["match"], "set-name": config.name, "dhcp4": True}
            continue
        assert entry["addresses"] == [f"{a.address}/{ipaddress.ip_network(a.cidr).prefixlen}"
                                      for a in config.addresses]
        assert entry["nameservers"] == {"addresses": ["10.0.0.53"]}
        gateways = [a.gateway for a in config.addresses if a.gateway]
        assert entry.get("routes", []) == ([{"to": "0.0.0.0/0", "via": gateways[-1]}] if gateways else [])


def test_a_containers_nics_are_matched_by_name():
    nic = cloudinit.NicConfig("eth0", "00:16:3e:00:00:01", [cloudinit.NicAddress("10.0.0.5", "10.0.0.0/24", None, [])])
    assert yaml.safe_load(cloudinit.network_config([nic], match_mac=False)) == {
        "version": 2, "ethernets": {"eth0": {"addresses": ["10.0.0.5/24"]}}}


# -- choosing the image --------------------------------------------------------------------------------

def test_distro_series_names_a_resource_or_a_release():
    found = [resource(1, "custom/noble"), resource(2, "ubuntu/noble"), resource(3, "custom/tiny"),
             resource(4, "ubuntu/noble", architecture="arm64/generic")]
    assert choose_image(found, "ubuntu/noble", "amd64/generic").id == 2
    assert choose_image(found, "noble", "amd64/generic").id == 2  # ubuntu/ first
    assert choose_image(found, "custom/noble", "amd64/generic").id == 1
    assert choose_image(found, "tiny", "amd64/generic").id == 3
    assert choose_image(found, "noble", "arm64/generic").id == 4
    assert choose_image(found, "jammy", "amd64/generic") is None


# -- the rack's rebuild --------------------------------------------------------------------------------

OLD = {
    "name": "m1", "type": "virtual-machine", "architecture": "x86_64", "description": "",
    "profiles": ["default"], "status_code": 102,
    "config": {"limits.cpu": "2", "limits.memory": "2048MiB", "security.secureboot": "false",
               "volatile.eth1.hwaddr": "00:16:3e:aa:bb:cc", "volatile.uuid": "x", "image.os": "old",
               "cloud-init.user-data": "old", "user.user-data": "older", "user.vmyard.reservation": "abc"},
    "devices": {"root": {"type": "disk", "path": "/", "pool": "default", "size": "8GiB"},
                "disk1": {"type": "disk", "pool": "default", "source": "vmyard-m1-disk1"},
                "eth0": {"type": "nic", "nictype": "bridged", "parent": "br0", "hwaddr": "00:16:3e:00:00:01"},
                "eth1": {"type": "nic", "nictype": "bridged", "parent": "br1"},
                "cloud-init": {"type": "disk", "source": "cloud-init:config"}},
}


def test_a_rebuild_keeps_limits_devices_and_macs_and_sets_cloud_init():
    source = {"type": "image", "fingerprint": "f" * 64}
    new = lxd_deploy.rebuilt_definition(OLD, source, CloudInitData("#ud", "version: 2\n"), ["default", "proxy"])
    assert new["source"] == source and new["type"] == "virtual-machine" and new["architecture"] == "x86_64"
    assert new["profiles"] == ["default", "proxy"]
    assert new["config"] == {"limits.cpu": "2", "limits.memory": "2048MiB", "security.secureboot": "false",
                             "user.vmyard.reservation": "abc", "cloud-init.user-data": "#ud",
                             "cloud-init.network-config": "version: 2\n"}
    assert new["devices"]["eth1"]["hwaddr"] == "00:16:3e:aa:bb:cc"  # the MAC LXD had chosen
    assert new["devices"]["eth0"] == OLD["devices"]["eth0"] and new["devices"]["disk1"] == OLD["devices"]["disk1"]
    assert new["devices"]["cloud-init"] == {"type": "disk", "source": "cloud-init:config"}  # VM config drive


def test_an_erase_drops_cloud_init_and_the_config_drive():
    new = lxd_deploy.rebuilt_definition(OLD, {"type": "none"}, None, ["default"])
    assert not [k for k in new["config"] if "user-data" in k] and "cloud-init" not in new["devices"]
    assert set(new["devices"]) == {"root", "disk1", "eth0", "eth1"}


def test_containers_get_no_config_drive():
    new = lxd_deploy.rebuilt_definition({**OLD, "type": "container"}, {"type": "none"}, CloudInitData("u", "n"), [])
    assert "cloud-init" not in new["devices"] and new["config"]["cloud-init.user-data"] == "u"


def test_profiles_of_a_deploy_are_added_once_and_removed_on_erase():
    assert lxd_deploy.profiles_after_deploy(["default", "gpu"], ["gpu", "proxy"]) == ["default", "gpu", "proxy"]
    assert lxd_deploy.profiles_after_erase(["default", "gpu", "proxy"], ["proxy"]) == ["default", "gpu"]


@pytest.mark.parametrize("output, code, status", [
    ("status: running\n", 0, "running"), ("status: done\n", 0, "done"), ("status: done\n", 2, "done"),
    ("status: error\n", 1, "error"), ("status: done\n", 1, "error"), ("garbage", 0, "unknown"),
])
def test_cloud_init_status_is_read_from_its_output(output, code, status):
    assert lxd_deploy.parse_cloud_init_status(output, code) == status
