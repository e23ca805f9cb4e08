"""OAuth 1.0a PLAINTEXT against a real region: good, bad, missing, and the MAAS error shapes."""

from __future__ import annotations

from tests.fixtures.http import Api, plaintext_header


def test_version_is_anonymous(region):
    reply = Api(region.api).get("version/")
    assert reply.status == 200
    assert reply.content_type == "application/json"
    assert set(reply.json()) == {"capabilities", "version", "subversion"}


def test_good_signature_whoami(admin_api):
    reply = admin_api.get("users/", query={"op": "whoami"})
    assert reply.status == 200
    assert reply.json() == {"username": "admin", "email": "admin@example.com", "is_superuser": True,
                            "is_local": True, "resource_uri": "/MAAS/api/2.0/users/admin/"}


def test_missing_credentials_refused(region):
    reply = Api(region.api).get("users/", query={"op": "whoami"})
    assert reply.status == 401
    assert "credentials were not provided" in reply.text


def test_bad_signature_refused(admin_api):
    consumer, token, _secret = admin_api.apikey.split(":")
    bad = Api(admin_api.base, f"{consumer}:{token}:not-the-secret")
    reply = bad.get("users/", query={"op": "whoami"})
    assert reply.status == 401
    assert reply.text.startswith("Authorization Error:")


def test_unknown_token_refused(region):
    reply = Api(region.api, "a:b:c").get("zones/")
    assert reply.status == 401


def test_missing_oauth_parameter_refused(admin_api):
    header = plaintext_header(admin_api.apikey, admin_api.base + "zones/")
    without_nonce = ", ".join(p for p in header.split(", ") if not p.startswith("oauth_nonce"))
    reply = admin_api.get("zones/", headers={"Authorization": without_nonce})
    assert reply.status == 401
    assert "oauth_nonce" in reply.text


def test_hmac_signature_method_refused(admin_api):
    header = plaintext_header(admin_api.apikey, admin_api.base + "zones/").replace("PLAINTEXT", "HMAC-SHA1")
    reply = admin_api.get("zones/", headers={"Authorization": header})
    assert reply.status == 401
    assert "PLAINTEXT" in reply.text


def test_realm_is_ignored_and_header_without_realm_works(admin_api):
    header = plaintext_header(admin_api.apikey, admin_api.base + "zones/")
    no_realm = header.replace('realm="OAuth", ', "")
    assert admin_api.get("zones/", headers={"Authorization": no_realm}).status == 200
    header = plaintext_header(admin_api.apikey, admin_api.base + "zones/")  # a fresh nonce
    other = header.replace('realm="OAuth"', 'realm="MAAS+API"')
    assert admin_api.get("zones/", headers={"Authorization": other}).status == 200


def test_unknown_op_is_a_400_and_unknown_path_404(admin_api):
    assert admin_api.get("zones/", query={"op": "frobnicate"}).status == 400
    assert admin_api.get("no-such-thing/").status == 404


def test_empty_op_means_no_op(admin_api):
    # gomaasapi sends POST ...?op= for plain creates.
    reply = admin_api.post("zones/?op=", data={"name": "viaempty"})
    assert reply.status == 200, reply.text
    assert reply.json()["name"] == "viaempty"


def test_non_admin_cannot_create_zones(user_api):
    reply = user_api.post("zones/", data={"name": "nope"})
    assert reply.status == 403
    assert [z["name"] for z in user_api.get("zones/").json()] == ["default"]
