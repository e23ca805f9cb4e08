"""The token lookup and the nonce's record are one statement: a request refused for its signature
leaves no trace of its nonce, an accepted one records it once."""

from __future__ import annotations

import re

from devstack.oauth import plaintext_header


def test_a_refused_signature_does_not_spend_its_nonce(admin_api):
    good = plaintext_header(admin_api.apikey, admin_api.base + "zones/")
    forged = re.sub(r'oauth_signature="[^"]*"', 'oauth_signature="%26not-the-secret"', good)
    assert forged != good
    refused = admin_api.get("zones/", headers={"Authorization": forged})
    assert refused.status == 401 and "signature" in refused.text
    assert admin_api.get("zones/", headers={"Authorization": good}).status == 200  # same nonce, now signed
    replay = admin_api.get("zones/", headers={"Authorization": good})
    assert replay.status == 401 and "replay" in replay.text
