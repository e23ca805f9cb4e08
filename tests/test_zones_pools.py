"""zones/ and resource pools over the real API: CRUD, bad input, defaults, body encodings."""

from __future__ import annotations

import base64

import pytest


def multipart(fields: list[tuple[str, str]]) -> tuple[bytes, str]:
    """A body shaped like python-libmaas sends: quoted boundary, base64 parts."""
    boundary = "===============1234567890=="
    parts = []
    for name, value in fields:
        parts.append(
            f"--{boundary}\r\nContent-Type: text/plain; charset=\"utf-8\"\r\nMIME-Version: 1.0\r\n"
            f"Content-Transfer-Encoding: base64\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
            f"{base64.b64encode(value.encode()).decode()}\r\n"
        )
    body = "".join(parts) + f"--{boundary}--\r\n"
    return body.encode(), f'multipart/form-data; boundary="{boundary}"'


def test_zone_crud(admin_api):
    created = admin_api.post("zones/", data={"name": "rack-a", "description": "Row A"})
    assert created.status == 200
    zone = created.json()
    assert zone == {"id": zone["id"], "name": "rack-a", "description": "Row A",
                    "resource_uri": "/MAAS/api/2.0/zones/rack-a/"}
    assert admin_api.get("zones/rack-a/").json() == zone

    updated = admin_api.put("zones/rack-a/", data={"description": "Row A, cold aisle"})
    assert updated.status == 200
    assert updated.json()["description"] == "Row A, cold aisle"
    assert updated.json()["resource_uri"]

    renamed = admin_api.put("zones/rack-a/", data={"name": "row-a"})
    assert renamed.json()["name"] == "row-a"
    assert admin_api.get("zones/rack-a/").status == 404

    deleted = admin_api.delete("zones/row-a/", headers={"Content-Length": "0"})
    assert deleted.status == 204
    assert deleted.content_type, "MAAS clients need a Content-Type even on 204"
    assert [z["name"] for z in admin_api.get("zones/").json()] == ["default"]


@pytest.mark.parametrize("path,item", [("zones/", "zones/{name}/"), ("resourcepools/", "resourcepool/{id}/"),
                                       ("resource-pools/", "resource-pools/{id}/")])
def test_defaults_cannot_be_deleted(admin_api, path, item):
    default = next(o for o in admin_api.get(path).json() if o["name"] == "default")
    reply = admin_api.delete(item.format(**default))
    assert reply.status == 400
    assert "default" in reply.text and "cannot be deleted" in reply.text
    assert admin_api.get(item.format(**default)).json() == default


@pytest.mark.parametrize("data,field", [
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": "has space"}, "name"),
    ({"name": "x" * 300}, "name"),
    ({"name": "ok", "description": "d" * 5000}, "description"),
])
def test_bad_input_is_a_400_naming_the_field_and_changes_nothing(admin_api, data, field):
    before = admin_api.get("zones/").json()
    reply = admin_api.post("zones/", data=data)
    assert reply.status == 400
    assert reply.content_type == "application/json"
    assert field in reply.json()
    assert admin_api.get("zones/").json() == before


def test_duplicate_name_is_a_field_error(admin_api):
    assert admin_api.post("zones/", data={"name": "dup"}).status == 200
    reply = admin_api.post("zones/", data={"name": "dup"})
    assert reply.status == 400
    assert reply.json() == {"name": ["Zone with this Name already exists."]}
    rename = admin_api.put("zones/dup/", data={"name": "default"})
    assert rename.status == 400 and "name" in rename.json()
    assert admin_api.get("zones/dup/").status == 200


def test_resource_pool_crud_with_multipart_bodies(admin_api):
    body, ctype = multipart([("name", "gpu"), ("description", "GPU hosts")])
    created = admin_api.post("resourcepools/", body=body, headers={"Content-Type": ctype})
    assert created.status == 200, created.text
    pool = created.json()
    assert pool["resource_uri"] == f"/MAAS/api/2.0/resourcepool/{pool['id']}/"
    assert pool["description"] == "GPU hosts"

    body, ctype = multipart([("description", "GPU hosts (A100)")])
    updated = admin_api.put(f"resourcepool/{pool['id']}/", body=body, headers={"Content-Type": ctype})
    assert updated.status == 200, updated.text
    assert updated.json()["description"] == "GPU hosts (A100)"
    assert admin_api.get("resourcepool/gpu/").json()["id"] == pool["id"], "addressable by name too"

    # python-libmaas sends DELETE with an empty multipart body of this exact shape.
    boundary = "===============0123456789=="
    empty = f"--{boundary}\r\n\r\n--{boundary}--".encode()
    ctype = f'multipart/form-data; boundary="{boundary}"'
    assert admin_api.delete(f"resourcepool/{pool['id']}/", body=empty, headers={"Content-Type": ctype}).status == 204
    assert admin_api.get(f"resourcepool/{pool['id']}/").status == 404


def test_missing_item_is_404_text(admin_api):
    reply = admin_api.get("zones/nowhere/")
    assert reply.status == 404
    assert "No zone matches the given query." in reply.text
    assert admin_api.put("resourcepool/999/", data={"description": "x"}).status == 404


def test_events_record_who_changed_what(admin_api, dsn):
    import psycopg2

    admin_api.post("zones/", data={"name": "audited"})
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT type, username, level FROM events WHERE object_type = 'zone' ORDER BY id")
        assert ("ZONES_CREATED", "admin", "AUDIT") in cur.fetchall()
    conn.close()
