"""The web UI over plain HTTP against a real region: pages and caching, password login to a
session cookie, the REST API with that cookie (CSRF header required for writes), logout,
expiry, and the server-sent events stream."""

from __future__ import annotations

import http.client
import json
import ssl
import time
import urllib.parse

import pytest

from region.db.pool import run_sync
from tests.conftest import make_user, region_box
from tests.fixtures.daemons import free_port
from tests.fixtures.ui_http import UiClient

pytestmark = pytest.mark.slow


@pytest.fixture
def ui(region, dsn) -> UiClient:
    make_user(dsn, region_box(region), "uiadmin", admin=True)
    return UiClient(region.url.removesuffix("/MAAS/"))


def test_page_assets_and_redirect(ui):
    root = ui.request("GET", "/")
    assert root.status in (301, 302) and root.headers["location"].endswith("/MAAS/r/")
    page = ui.request("GET", "/MAAS/r/kvm")
    assert page.status == 200 and page.content_type.startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    asset = page.text.split('src="')[1].split('"')[0]
    script = ui.request("GET", asset)
    assert script.status == 200 and script.content_type.startswith("text/javascript")
    assert "immutable" in script.headers["cache-control"]
    stale = ui.request("GET", "/MAAS/r/static/0000000000000000/js/app.js")
    assert stale.status == 200 and stale.headers["cache-control"] == "no-cache"
    assert ui.request("GET", "/MAAS/r/static/x/nope.js").status == 404


def test_login_fields_and_wrong_password(ui):
    missing = ui.request("POST", "/MAAS/r/session", json_body={"username": "uiadmin"})
    assert missing.status == 400 and missing.json() == {"password": ["This field is required."]}
    garbage = ui.request("POST", "/MAAS/r/session", form=b"\xff\xfe")
    assert garbage.status == 400
    wrong = ui.login("uiadmin", "not-the-password")
    assert wrong.status == 401 and ui.session is None
    assert ui.request("GET", "/MAAS/r/session").status == 401


def test_session_cookie_authenticates_api_and_writes_need_csrf(ui, region):
    reply = ui.login("uiadmin", "pw-uiadmin")
    assert reply.status == 200 and reply.json()["is_admin"] is True
    cookie = reply.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/MAAS/" in cookie
    assert "Secure" not in cookie  # plain HTTP here; over HTTPS the cookie is Secure
    assert ui.request("GET", "/MAAS/r/session").json()["username"] == "uiadmin"

    assert ui.request("GET", "/MAAS/api/2.0/zones/").status == 200
    refused = ui.request("POST", "/MAAS/api/2.0/zones/", form=b"name=no-csrf", csrf=False)
    assert refused.status == 403 and "CSRF" in refused.text
    forged = ui.request("POST", "/MAAS/api/2.0/zones/", form=b"name=forged", headers={"X-CSRFToken": "x" * 43},
                        csrf=False)
    assert forged.status == 403
    names = [z["name"] for z in ui.request("GET", "/MAAS/api/2.0/zones/").json()]
    assert "no-csrf" not in names and "forged" not in names
    made = ui.request("POST", "/MAAS/api/2.0/zones/", form=b"name=with-csrf")
    assert made.status == 200 and made.json()["name"] == "with-csrf"

    assert ui.request("DELETE", "/MAAS/r/session", csrf=False).status == 403
    assert ui.request("GET", "/MAAS/r/session").status == 200  # still logged in
    out = ui.request("DELETE", "/MAAS/r/session")
    assert out.status == 204 and "Max-Age=0" in out.headers["set-cookie"]
    assert ui.request("GET", "/MAAS/api/2.0/zones/").status == 401
    assert ui.request("GET", "/MAAS/r/session").status == 401


def test_expired_session_is_refused(ui, dsn):
    ui.login("uiadmin", "pw-uiadmin")
    assert ui.request("GET", "/MAAS/api/2.0/zones/").status == 200
    run_sync(dsn, lambda cur: cur.execute("UPDATE ui_sessions SET expires = now() - interval '1 second'"))
    assert ui.request("GET", "/MAAS/api/2.0/zones/").status == 401
    assert ui.request("GET", "/MAAS/r/session").status == 401
    assert ui.request("GET", "/MAAS/r/events").status == 401


def test_events_stream_pushes_changes(ui):
    assert ui.request("GET", "/MAAS/r/events").status == 401
    ui.login("uiadmin", "pw-uiadmin")
    parts = urllib.parse.urlsplit(ui.root)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
    conn.request("GET", "/MAAS/r/events", headers={"Cookie": f"vmyard_session={ui.session}"})
    stream = conn.getresponse()
    assert stream.status == 200 and stream.getheader("Content-Type") == "text/event-stream"
    assert stream.readline() == b"retry: 3000\n" and stream.readline() == b"event: hello\n"
    time.sleep(2.5)  # the feed has taken its first fingerprint
    assert ui.request("POST", "/MAAS/api/2.0/zones/", form=b"name=live-zone").status == 200
    deadline = time.monotonic() + 10
    seen = []
    while time.monotonic() < deadline:
        line = stream.readline()
        seen.append(line)
        if line == b"event: changed\n":
            break
    assert b"event: changed\n" in seen, seen
    conn.close()


def test_compose_check_needs_a_session_csrf_and_an_admin(ui, region, dsn):
    body = {"cores": "1", "memory": "1024"}
    assert ui.request("POST", "/MAAS/r/compose-check/1", json_body=body).status == 401
    make_user(dsn, region_box(region), "uiuser", admin=False)
    ui.login("uiuser", "pw-uiuser")
    assert ui.request("POST", "/MAAS/r/compose-check/1", json_body=body, csrf=False).status == 403
    assert ui.request("POST", "/MAAS/r/compose-check/1", json_body=body).status == 403  # not an admin
    ui.login("uiadmin", "pw-uiadmin")
    assert ui.request("POST", "/MAAS/r/compose-check/1", json_body=body).status == 404  # no such host
    bad = ui.request("POST", "/MAAS/r/compose-check/1", json_body={"cores": 2})
    assert bad.status == 400 and bad.json() == {"cores": ["Send this field as a string."]}
    assert ui.request("POST", "/MAAS/r/compose-check/1", form=b"[1]").status == 400
    assert ui.request("GET", "/MAAS/r/compose-check/1").status == 405


def test_session_cookie_is_secure_over_https(start_region, dsn):
    port = free_port()
    region = start_region("uitls", extra=["--https", f"127.0.0.1:{port}"])
    make_user(dsn, region_box(region), "tlsadmin", admin=True)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the region CA's own certificate
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    conn.request("POST", "/MAAS/r/session", body=json.dumps({"username": "tlsadmin", "password": "pw-tlsadmin"}),
                 headers={"Content-Type": "application/json"})
    reply = conn.getresponse()
    assert reply.status == 200
    cookie = reply.getheader("Set-Cookie")
    assert "; Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    conn.close()
