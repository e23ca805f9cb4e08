"""Region side of rack enrolment (see common/enrolment.py for the protocol)."""

from __future__ import annotations

import secrets as _random

import attrs

from twisted.logger import Logger

from common import tls
from common.enrolment import EnrolRequest, EnrolResponse
from region.api.errors import BadRequest, Forbidden
from region.api.handler import Call, Handler, restful
from region.db import events, racks, secrets

log = Logger()

ONE_TIME_PREFIX = "rack-enrollment-once:"


def new_enrolment_secret() -> str:
    return _random.token_urlsafe(24)


def candidate_secrets_thd(cur, box) -> list[tuple[str, str]]:
    """(secret name, value) for the shared secret and every one-time secret."""
    cur.execute("SELECT name FROM secrets WHERE name = %s OR name LIKE %s ORDER BY name",
                (secrets.ENROLLMENT_SECRET, ONE_TIME_PREFIX + "%"))
    return [(name, secrets.get_thd(cur, box, name)) for (name,) in cur.fetchall()]


def create_one_time_secret_thd(cur, box) -> str:
    value = new_enrolment_secret()
    secrets.put_thd(cur, box, ONE_TIME_PREFIX + _random.token_hex(8), value)
    return value


def rotate_shared_secret_thd(cur, box) -> str:
    value = new_enrolment_secret()
    secrets.put_thd(cur, box, secrets.ENROLLMENT_SECRET, value)
    return value


class EnrolHandler(Handler):
    """Rack enrolment (not part of the MAAS API)."""

    path = "enrol"

    @restful("POST", anonymous=True)
    async def create(self, call: Call):
        """Enrol a rack: CSR and secret proof in, signed certificate out."""
        try:
            request = EnrolRequest(*(call.params.get(f) or "" for f in ("hostname", "csr", "nonce", "proof")))
        except TypeError:
            raise BadRequest("malformed enrolment request") from None
        if not request.hostname or not request.nonce or not request.proof:
            raise BadRequest("hostname, nonce and proof are required")
        region = call.region
        candidates = await region.db.run(candidate_secrets_thd, region.box)
        matched = next((name for name, value in candidates if request.proves(value)), None)
        if matched is None:
            log.warn("refused to enrol rack {hostname}: wrong enrollment secret", hostname=request.hostname)
            raise Forbidden("The enrollment secret is wrong: check the rack's secret file "
                            "against `vmyard-region enrol-secret` on the region.")
        try:
            csr = tls.load_csr(request.csr)
        except tls.CertificateError as e:
            raise BadRequest.field("csr", str(e)) from None
        secret_value = dict(candidates)[matched]
        system_id = tls.new_system_id()
        cert = tls.issue_certificate(region.ca, system_id, csr.public_key(), dns_names=(system_id,))
        fingerprint = tls.cert_fingerprint(cert)

        def enrol_thd(cur):
            racks.enrol_thd(cur, system_id, request.hostname, fingerprint)
            if matched.startswith(ONE_TIME_PREFIX):
                secrets.delete_thd(cur, matched)
            events.record_thd(cur, "RACK_ENROLLED", f"rack {request.hostname} enrolled as {system_id}",
                              level="AUDIT", object_type="rack", object_id=system_id)

        await region.db.run(enrol_thd)
        log.info("enrolled rack {hostname} as {system_id}", hostname=request.hostname, system_id=system_id)
        response = EnrolResponse.make(secret_value, request, system_id, cert, region.ca.cert_pem,
                                      region.rpc_port)
        return attrs.asdict(response)
