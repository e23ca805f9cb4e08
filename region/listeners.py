"""The region's listening endpoints: RPC (AMP over mutual TLS), HTTP and optional HTTPS."""

from __future__ import annotations

import socket
from typing import Callable

import attrs
from twisted.application import internet
from twisted.internet import defer, endpoints, ssl
from twisted.internet.interfaces import IStreamServerEndpoint
from zope.interface import implementer

from common import tls
from common.tlsopts import region_server_options
from region.config import RegionConfig


@implementer(IStreamServerEndpoint)
@attrs.define(eq=False)
class ReportingEndpoint:
    """Wraps an endpoint so its owner learns the bound port, or why listening failed
    (StreamServerEndpointService would only log the failure)."""

    endpoint: IStreamServerEndpoint
    bound: defer.Deferred = attrs.field(init=False, factory=defer.Deferred)

    def listen(self, factory) -> defer.Deferred:
        d = self.endpoint.listen(factory)
        d.addCallbacks(self._listening, self._failed)
        return d

    def _listening(self, port):
        self.bound.callback(port.getHost().port)
        return port

    def _failed(self, failure) -> None:
        self.bound.errback(failure)  # reported once, by the owner


def listener(endpoint: IStreamServerEndpoint, factory) -> tuple[internet.StreamServerEndpointService,
                                                                   defer.Deferred]:
    """A listening service, and a Deferred firing with its bound port once it has started."""
    reporting = ReportingEndpoint(endpoint)
    return internet.StreamServerEndpointService(reporting, factory), reporting.bound


def rpc_endpoint(reactor, cfg: RegionConfig) -> IStreamServerEndpoint:
    """Plain TCP: the RPC factory caps connections below its own TLS layer."""
    return endpoints.TCP4ServerEndpoint(reactor, cfg.rpc_port, interface=cfg.rpc_host)


def rpc_tls_options(ca: tls.KeyPair, refused: Callable[[str], bool]) -> ssl.CertificateOptions:
    key = tls.new_private_key()
    cert = tls.issue_certificate(ca, tls.REGION_SERVICE_NAME, key.public_key(), server=True, days=365)
    return region_server_options(ca.cert_pem, tls.KeyPair(tls.key_to_pem(key), cert), refused)


def http_endpoint(reactor, cfg: RegionConfig) -> IStreamServerEndpoint:
    if ":" in cfg.http_host:
        return endpoints.TCP6ServerEndpoint(reactor, cfg.http_port, interface=cfg.http_host)
    return endpoints.TCP4ServerEndpoint(reactor, cfg.http_port, interface=cfg.http_host)


def https_endpoint(reactor, cfg: RegionConfig, ca: tls.KeyPair) -> IStreamServerEndpoint:
    return endpoints.SSL4ServerEndpoint(reactor, cfg.https_port, _https_options(cfg, ca), interface=cfg.https_host)


def _https_options(cfg: RegionConfig, ca: tls.KeyPair) -> ssl.CertificateOptions:
    if cfg.tls_cert_file:
        pair = tls.KeyPair(cfg.tls_key_file.read_text(), cfg.tls_cert_file.read_text())
        tls.check_pair(pair.cert_pem, pair.key_pem)
    else:
        key = tls.new_private_key()
        names = tuple(dict.fromkeys([socket.getfqdn(), socket.gethostname(), "localhost"]))
        cert = tls.issue_certificate(ca, names[0], key.public_key(), dns_names=names, server=True, days=365)
        pair = tls.KeyPair(tls.key_to_pem(key), cert)
    priv = ssl.PrivateCertificate.loadPEM(pair.key_pem + "\n" + pair.cert_pem)
    return ssl.CertificateOptions(privateKey=priv.privateKey.original, certificate=priv.original,
                                  raiseMinimumTo=ssl.TLSVersion.TLSv1_2)
