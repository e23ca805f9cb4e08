"""Rack enrolment, the region's side (the protocol is common/enrolment.py): a rack that
proves it knows an enrolment secret gets a certificate signed by the region's CA."""

from __future__ import annotations

import re

from twisted.logger import Logger

from common import tls
from common.enrolment import EnrolRequest, EnrolResponse
from common.logsafe import loggable
from region.db import racks, secrets
from region.services.context import Context
from region.services.errors import FieldError, Forbidden

log = Logger()

# A DNS name as `hostname` gives it (underscores tolerated: some machines have them).
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?")


async def enrol(ctx: Context, request: EnrolRequest) -> EnrolResponse:
    """Enrol a rack; a one-time secret it proved is used up."""
    if not _HOSTNAME.fullmatch(request.hostname):
        raise FieldError("hostname", "Enter a valid hostname: at most 253 letters, digits, '.', '-' or '_', "
                                     "starting and ending with a letter or digit.")
    candidates = dict(await ctx.db.run(secrets.enrolment_secrets_thd, ctx.box))
    matched = next((name for name, value in candidates.items() if request.proves(value)), None)
    if matched is None:
        log.warn("refused to enrol rack {hostname}: wrong enrollment secret", hostname=loggable(request.hostname))
        raise Forbidden("The enrollment secret is wrong: check the rack's secret file "
                        "against `vmyard-region enrol-secret` on the region.")
    try:
        csr = tls.load_csr(request.csr)
    except tls.CertificateError as e:
        raise FieldError("csr", str(e)) from None
    ca = ctx.region.ca
    system_id = tls.new_system_id()
    cert = tls.issue_certificate(ca, system_id, csr.public_key(), dns_names=(system_id,))

    def enrol_thd(cur):
        racks.enrol_thd(cur, system_id, request.hostname, tls.cert_fingerprint(cert))
        if matched.startswith(secrets.ONE_TIME_PREFIX):
            secrets.delete_thd(cur, matched)
        ctx.audit_thd(cur, "RACK_ENROLLED", f"rack {request.hostname} enrolled as {system_id}", "rack", system_id)

    await ctx.db.run(enrol_thd)
    log.info("enrolled rack {hostname} as {system_id}", hostname=loggable(request.hostname), system_id=system_id)
    return EnrolResponse.make(candidates[matched], request, system_id, cert, ca.cert_pem, ctx.region.rpc_port)
