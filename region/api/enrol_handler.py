"""rpc/enrol: rack enrolment over HTTP (not part of the MAAS API; see common/enrolment.py)."""

from __future__ import annotations

import attrs

from common.enrolment import EnrolRequest
from region.api.errors import BadRequest
from region.api.handler import Call, Handler, restful
from region.services import enrol


class EnrolHandler(Handler):
    """Rack enrolment (not part of the MAAS API)."""

    path = "enrol"

    @restful("POST", anonymous=True)
    async def create(self, call: Call):
        """Enrol a rack: CSR and secret proof in, signed certificate out."""
        request = EnrolRequest(*(call.params.get(f) or "" for f in ("hostname", "csr", "nonce", "proof")))
        if not request.hostname or not request.nonce or not request.proof:
            raise BadRequest("hostname, nonce and proof are required")
        return attrs.asdict(await enrol.enrol(call.ctx, request))
