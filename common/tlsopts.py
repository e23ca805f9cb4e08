"""Twisted TLS options for the mutual-TLS AMP link between region and rack."""

from __future__ import annotations

import hashlib

from OpenSSL import crypto
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator

from common.tls import REGION_SERVICE_NAME, KeyPair


def _private(pair: KeyPair) -> ssl.PrivateCertificate:
    return ssl.PrivateCertificate.loadPEM(pair.key_pem + "\n" + pair.cert_pem)


def region_server_options(ca_cert_pem: str, server: KeyPair) -> ssl.CertificateOptions:
    """Server side: present `server`, demand a client certificate from our CA."""
    priv = _private(server)
    return ssl.CertificateOptions(
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


def peer_fingerprint(transport) -> str | None:
    """SHA-256 of the peer's DER certificate, or None before the handshake."""
    cert = transport.getPeerCertificate()
    if cert is None:
        return None
    return hashlib.sha256(crypto.dump_certificate(crypto.FILETYPE_ASN1, cert)).hexdigest()
