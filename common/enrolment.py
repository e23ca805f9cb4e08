"""Rack enrolment: a CSR for a CA-signed client certificate, proved by a secret.

The enrolment secret never crosses the wire.  The rack proves it knows it
with an HMAC over its nonce and CSR; the region answers with an HMAC over the
same nonce, the issued certificate and the CA, so the rack also knows the CA
it will trust from now on came from a region holding the secret.  This works
over plain HTTP without letting an eavesdropper enrol or a man in the middle
substitute its own CA.
"""

from __future__ import annotations

import hashlib
import hmac
import os

import attrs

ENROL_PATH = "/MAAS/rpc/enrol"


def _mac(secret: str, *parts: str) -> str:
    message = "\x00".join(parts).encode("utf-8")
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


@attrs.frozen
class EnrolRequest:
    hostname: str
    csr: str
    nonce: str
    proof: str

    @classmethod
    def make(cls, secret: str, hostname: str, csr: str) -> "EnrolRequest":
        nonce = os.urandom(16).hex()
        return cls(hostname, csr, nonce, _mac(secret, "rack", nonce, hostname, csr))

    def proves(self, secret: str) -> bool:
        return hmac.compare_digest(self.proof, _mac(secret, "rack", self.nonce, self.hostname, self.csr))


@attrs.frozen
class EnrolResponse:
    system_id: str
    certificate: str
    ca: str
    rpc_port: int
    proof: str

    @classmethod
    def make(cls, secret: str, request: EnrolRequest, system_id: str, certificate: str, ca: str,
             rpc_port: int) -> "EnrolResponse":
        proof = _mac(secret, "region", request.nonce, system_id, certificate, ca, str(rpc_port))
        return cls(system_id, certificate, ca, rpc_port, proof)

    def proves(self, secret: str, request: EnrolRequest) -> bool:
        expected = _mac(secret, "region", request.nonce, self.system_id, self.certificate, self.ca,
                        str(self.rpc_port))
        return hmac.compare_digest(self.proof, expected)
