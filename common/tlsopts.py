"""Twisted TLS options for the mutual-TLS AMP link between region and rack."""

from __future__ import annotations

import hashlib
from typing import Callable

from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator

from common.tls import REGION_SERVICE_NAME, KeyPair


def _private(pair: KeyPair) -> ssl.PrivateCertificate:
    return ssl.PrivateCertificate.loadPEM(pair.key_pem + "\n" + pair.cert_pem)


class _RefusingCertificateOptions(ssl.CertificateOptions):
    """Also fails verification of a peer certificate whose fingerprint `refused` names."""

    def __init__(self, refused: Callable[[str], bool], **kwargs) -> None:
        super().__init__(**kwargs)
        self._refused = refused

    def _makeContext(self, *args, **kwargs) -> SSL.Context:
        ctx = super()._makeContext(*args, **kwargs)
        ctx.set_verify(ctx.get_verify_mode(), self._verify)
        return ctx

    def _verify(self, connection, cert, error: int, depth: int, ok: int) -> bool:
        # Depth 0 is the peer's own certificate, the CA chain above it is fine.
        return bool(ok) and not (depth == 0 and self._refused(certificate_fingerprint(cert)))


def region_server_options(ca_cert_pem: str, server: KeyPair,
                          refused: Callable[[str], bool] = lambda fingerprint: False) -> ssl.CertificateOptions:
    """Server side: present `server`, demand a client certificate from our CA that
    `refused` (called with its fingerprint during the handshake) does not name."""
    priv = _private(server)
    return _RefusingCertificateOptions(
        refused,
        privateKey=priv.privateKey.original,
        certificate=priv.original,
        verify=True,
        requireCertificate=True,
        caCerts=[ssl.Certificate.loadPEM(ca_cert_pem).original],
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
    )


def rack_client_options(ca_cert_pem: str, client: KeyPair) -> IOpenSSLClientConnectionCreator:
    """Client side: present `client`, accept only a region certificate from our CA."""
    return ssl.optionsForClientTLS(
        REGION_SERVICE_NAME,
        trustRoot=ssl.Certificate.loadPEM(ca_cert_pem),
        clientCertificate=_private(client),
        extraCertificateOptions={"raiseMinimumTo": ssl.TLSVersion.TLSv1_2},
    )


def certificate_fingerprint(cert: crypto.X509) -> str:
    """SHA-256 of the DER certificate, as racks are enrolled under."""
    return hashlib.sha256(crypto.dump_certificate(crypto.FILETYPE_ASN1, cert)).hexdigest()


def peer_fingerprint(transport) -> str | None:
    """The peer certificate's fingerprint, or None before the handshake."""
    cert = transport.getPeerCertificate()
    return None if cert is None else certificate_fingerprint(cert)
