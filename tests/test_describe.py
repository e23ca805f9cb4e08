"""describe/, account tokens, /MAAS/accounts/authenticate/ and tags/ against a real region."""

from __future__ import annotations

import urllib.parse

from tests.conftest import make_user, region_box
from tests.fixtures.http import Api
from tests.test_vmhosts_lxd import add_trusted_host, unique

PREFIX = "/MAAS/api/2.0/"
CRUD = {"read": "GET", "create": "POST", "update": "PUT", "delete": "DELETE"}


def describe(api: Api, host: str | None = None) -> tuple[dict, object]:
    reply = api.get("describe/", headers={"Host": host} if host else None, sign=False)
    assert reply.status == 200, reply.text
    return reply.json(), reply


def resource(doc: dict, name: str) -> dict:
    return next(r for r in doc["resources"] if r["name"] == name)


def test_describe_is_the_maas_document_with_uris_from_the_host_header(region):
    doc, reply = describe(Api(region.api), host="maas.example:5240")
    assert reply.content_type == "application/json"  # exactly: the maas CLI compares the whole string
    assert set(doc) == {"doc", "hash", "resources", "handlers"} and doc["doc"] == "MAAS API"
    names = [r["name"] for r in doc["resources"]]
    assert names == sorted(names)
    assert {"PodsHandler", "PodHandler", "VmHostsHandler", "VmHostHandler", "MachinesHandler", "MachineHandler",
            "ZonesHandler", "TagsHandler", "TagHandler", "AccountHandler", "UsersHandler",
            "VersionHandler"} <= set(names)
    assert "DescribeHandler" not in names

    for r in doc["resources"]:
        assert set(r) == {"name", "anon", "auth"}
        for handler in (r["anon"], r["auth"]):
            if handler is None:
                continue
            assert set(handler) == {"name", "doc", "params", "path", "uri", "actions"}
            assert handler["path"].startswith(PREFIX)
            assert handler["uri"] == "http://maas.example:5240" + handler["path"]
            assert [a["name"] for a in handler["actions"]] == sorted(a["name"] for a in handler["actions"])
            for action in handler["actions"]:
                assert set(action) == {"name", "method", "op", "restful", "doc"}
                assert action["restful"] == (action["op"] is None)
                if action["restful"]:
                    assert CRUD[action["name"]] == action["method"]
    anon = [h["name"] for h in (r["anon"] for r in doc["resources"]) if h]
    auth = [h["name"] for h in (r["auth"] for r in doc["resources"]) if h]
    assert [h["name"] for h in doc["handlers"]] == anon + auth

    version = resource(doc, "VersionHandler")
    assert version["auth"] is None and version["anon"]["path"] == PREFIX + "version/"
    pods, pod = resource(doc, "PodsHandler")["auth"], resource(doc, "PodHandler")["auth"]
    assert resource(doc, "PodHandler")["anon"] is None
    assert pods["params"] == [] and pods["path"] == PREFIX + "pods/"
    assert pod["params"] == ["id"] and pod["path"] == PREFIX + "pods/{id}/"
    assert pod["uri"] == "http://maas.example:5240/MAAS/api/2.0/pods/{id}/"
    pod_actions = {a["name"]: a for a in pod["actions"]}
    assert {"read", "update", "delete", "refresh", "parameters", "compose", "add_tag", "remove_tag"} <= set(pod_actions)
    compose = pod_actions["compose"]
    assert (compose["method"], compose["op"], compose["restful"]) == ("POST", "compose", False)
    title, body = compose["doc"].split("\n\n", 1)
    assert title and ":param cores:" in body and ":param storage:" in body  # the CLI allows key=value only then
    assert ":param decompose:" in pod_actions["delete"]["doc"]
    vm_host = resource(doc, "VmHostHandler")["auth"]
    assert vm_host["params"] == ["id"] and vm_host["path"] == PREFIX + "vm-hosts/{id}/"
    assert [a["name"] for a in vm_host["actions"]] == [a["name"] for a in pod["actions"]]
    assert resource(doc, "MachineHandler")["auth"]["params"] == ["system_id"]
    assert resource(doc, "TagHandler")["auth"]["params"] == ["name"]
    assert {a["name"] for a in resource(doc, "MachinesHandler")["auth"]["actions"]} >= {"read"}


def test_describe_hash_is_stable_across_requests_hosts_and_regions(region, start_region, pg_cluster):
    first, reply = describe(Api(region.api), host="a.example")
    again, _ = describe(Api(region.api), host="b.example:8080")
    assert first["hash"] == again["hash"] and len(first["hash"]) == 40
    assert again["resources"][0]["auth" if again["resources"][0]["auth"] else "anon"]["uri"].startswith(
        "http://b.example:8080/MAAS/api/2.0/")
    other = start_region("second", database=pg_cluster.new_database())  # another deployment altogether
    assert describe(Api(other.api))[0]["hash"] == first["hash"]
    assert reply.headers.get("x-maas-api-hash") in (None, first["hash"])


def account(api: Api, op: str, **data):
    if op == "list_authorisation_tokens":
        return api.get("account/", query={"op": op})
    return api.post("account/", query={"op": op}, data=data)


def test_account_tokens_create_list_rename_delete(admin_api, region):
    made = account(admin_api, "create_authorisation_token", name="ci")
    assert made.status == 200 and made.content_type == "application/json", made.text
    token = made.json()
    assert set(token) == {"token_key", "token_secret", "consumer_key", "name"} and token["name"] == "ci"
    apikey = f"{token['consumer_key']}:{token['token_key']}:{token['token_secret']}"
    new_api = Api(region.api, apikey)
    assert new_api.get("users/", query={"op": "whoami"}).json()["username"] == "admin"

    listed = account(admin_api, "list_authorisation_tokens").json()
    assert {"name": "ci", "token": apikey} in listed and admin_api.apikey in [t["token"] for t in listed]

    assert account(admin_api, "update_token_name", token=apikey, name="ci-2").status == 200
    assert account(admin_api, "update_token_name", token=token["token_key"], name="ci-3").status == 200
    assert {"name": "ci-3", "token": apikey} in account(admin_api, "list_authorisation_tokens").json()

    gone = account(admin_api, "delete_authorisation_token", token_key=token["token_key"])
    assert gone.status == 204 and gone.content_type  # the maas CLI needs a content type even on 204
    assert new_api.get("users/", query={"op": "whoami"}).status == 401
    assert account(admin_api, "delete_authorisation_token", token_key=token["token_key"]).status == 404
    missing = account(admin_api, "delete_authorisation_token")
    assert missing.status == 400 and "token_key" in missing.json()

    anonymous = account(Api(region.api), "create_authorisation_token")
    assert anonymous.status == 401 and "macaroon" not in anonymous.headers.get("www-authenticate", "").lower()


def test_accounts_authenticate_exchanges_a_password_for_a_token(region, dsn):
    make_user(dsn, region_box(region), "carol", admin=False)  # password "pw-carol"
    url = region.url + "accounts/authenticate/"
    api = Api(url)

    def authenticate(**form):
        return api.post("", data=form)

    first = authenticate(username="carol", password="pw-carol", consumer="carol@laptop")
    assert first.status == 200 and first.content_type == "application/json", first.text
    creds = first.json()
    assert set(creds) == {"consumer_key", "token_key", "token_secret", "name"} and creds["name"] == "carol@laptop"
    apikey = f"{creds['consumer_key']}:{creds['token_key']}:{creds['token_secret']}"
    me = Api(region.api, apikey).get("users/", query={"op": "whoami"}).json()
    assert me["username"] == "carol" and me["is_superuser"] is False

    assert authenticate(username="carol", password="pw-carol", consumer="carol@laptop").json() == creds
    other = authenticate(username="carol", password="pw-carol", consumer="carol@desktop").json()
    assert other["token_key"] != creds["token_key"]

    assert authenticate(username="carol", password="nope", consumer="x").status == 401
    assert authenticate(username="nobody", password="pw-carol").status == 401
    assert authenticate(username="carol").status == 400
    assert api.get("").status == 405
    # A urlencoded body is what libmaas sends; multipart works too (parsed the same way).
    body = urllib.parse.urlencode({"username": "carol", "password": "pw-carol", "consumer": "carol@laptop"})
    raw = api.request("POST", "", body=body.encode(), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert raw.json()["token_key"] == creds["token_key"]


def test_tags_create_read_update_delete(admin_api, user_api):
    made = admin_api.post("tags/", data={"name": "fast", "comment": "NVMe hosts", "kernel_opts": "quiet"})
    assert made.status == 200, made.text
    assert made.json() == {"name": "fast", "definition": "", "comment": "NVMe hosts", "kernel_opts": "quiet",
                           "resource_uri": "/MAAS/api/2.0/tags/fast/"}
    assert admin_api.post("tags/", data={"name": "fast"}).json() == {"name": ["Tag with this Name already exists."]}
    assert admin_api.post("tags/", data={"name": "bad name"}).status == 400
    assert admin_api.post("tags/", data={}).json() == {"name": ["This field is required."]}
    assert user_api.post("tags/", data={"name": "mine"}).status == 403
    assert [t["name"] for t in user_api.get("tags/").json()] == ["fast"]

    updated = admin_api.put("tags/fast/", data={"comment": "NVMe", "definition": "//node[@id='disk']"})
    assert updated.status == 200 and updated.json()["comment"] == "NVMe"
    assert updated.json()["kernel_opts"] == "quiet" and updated.json()["definition"] == "//node[@id='disk']"
    renamed = admin_api.put("tags/fast/", data={"name": "faster"})
    assert renamed.json()["resource_uri"] == "/MAAS/api/2.0/tags/faster/"
    missing = admin_api.get("tags/fast/")
    assert missing.status == 404 and missing.text == "No Tag matches the given query."
    assert admin_api.get("tags/faster/", query={"op": "machines"}).json() == []

    gone = admin_api.delete("tags/faster/")
    assert gone.status == 204 and gone.content_type
    assert admin_api.get("tags/").json() == []


def test_tag_update_nodes_on_a_composed_machine(lxd_api, lxd_server):
    api = lxd_api
    host = add_trusted_host(api, lxd_server)
    composed = api.post(f"vm-hosts/{host['id']}/", data={"op": "compose", "storage": "root:1"})
    assert composed.status == 200, composed.text
    system_id = composed.json()["system_id"]
    try:
        name = unique("t")
        assert api.post("tags/", data={"name": name}).status == 200

        def tag_names() -> list[str]:
            return api.get(f"machines/{system_id}/").json()["tag_names"]

        added = api.post(f"tags/{name}/", query={"op": "update_nodes"}, data={"add": [system_id, "nosuch"]})
        assert added.json() == {"added": 1, "removed": 0}
        assert name in tag_names()
        again = api.post(f"tags/{name}/", query={"op": "update_nodes"}, data={"add": system_id})
        assert again.json() == {"added": 1, "removed": 0} and tag_names().count(name) == 1
        listed = api.get(f"tags/{name}/", query={"op": "machines"}).json()
        assert [m["system_id"] for m in listed] == [system_id]

        api.put(f"tags/{name}/", data={"name": name + "-x"})
        name += "-x"
        assert name in tag_names() and name[:-2] not in tag_names()

        stale = api.post(f"tags/{name}/", query={"op": "update_nodes"}, data={"remove": system_id, "definition": "x"})
        assert stale.status == 409 and name in tag_names()
        removed = api.post(f"tags/{name}/", query={"op": "update_nodes"}, data={"remove": system_id, "definition": ""})
        assert removed.json() == {"added": 0, "removed": 1} and name not in tag_names()

        api.post(f"tags/{name}/", query={"op": "update_nodes"}, data={"add": system_id})
        assert api.delete(f"tags/{name}/").status == 204
        assert name not in tag_names()
        assert api.post(f"tags/{name}/", query={"op": "update_nodes"}, data={"add": system_id}).status == 404
    finally:
        assert api.delete(f"machines/{system_id}/").status == 204
        assert api.delete(f"vm-hosts/{host['id']}/").status == 204
