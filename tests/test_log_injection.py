"""Nothing a client sends can forge or flood a line of the region's log (POST /MAAS/rpc/enrol)."""

from __future__ import annotations

from common import tls
from common.enrolment import EnrolRequest
from tests.fixtures.http import Api

FORGED = "enrolled rack forged as abc123"


def enrol(region, hostname: str):
    _, csr = tls.make_csr("rack1")
    request = EnrolRequest.make("not-the-secret", "rack1", csr)
    return Api(region.url).post("rpc/enrol", data={"hostname": hostname, "csr": request.csr,
                                                   "nonce": request.nonce, "proof": request.proof})


def test_a_hostname_with_a_newline_or_a_megabyte_is_a_400_and_forges_no_log_line(region):
    before = len(region.output())
    forged = enrol(region, "rack1\nregion.services.enrol: " + FORGED)
    assert forged.status == 400 and "hostname" in forged.json(), forged.text
    huge = enrol(region, "r" * 1_000_000)
    assert huge.status == 400 and "hostname" in huge.json()
    wrong = enrol(region, "rack1")
    assert wrong.status == 403, wrong.text
    log = region.output()[before:]
    assert "refused to enrol rack rack1: wrong enrollment secret" in log
    assert FORGED not in log, "refused before anything about it was logged"
    assert "r" * 1000 not in log and len(log) < 100_000
