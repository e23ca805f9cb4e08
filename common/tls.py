"""Certificates and TLS contexts shared by region and rack.

The region runs a small private CA.  It signs the region's RPC server
certificate and, at enrolment, each rack's client certificate.  Both sides of
the AMP connection then verify the other against that CA only (mutual TLS);
the region additionally checks the rack's certificate fingerprint against the
database so that a deleted rack is locked out at once.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import uuid
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Racks verify the region's certificate against this name, not the address
# they dialled: a region may be reached by any address, and only our CA can
# issue a certificate carrying it.
REGION_SERVICE_NAME = "vmyard-region"

_ONE_DAY = datetime.timedelta(days=1)


class CertificateError(ValueError):
    """A PEM certificate or key is unusable; the message says why."""


@attrs.frozen
class KeyPair:
    """A PEM private key and the PEM certificate that goes with it."""

    key_pem: str = attrs.field(repr=False)
    cert_pem: str

    @property
    def fingerprint(self) -> str:
        return cert_fingerprint(self.cert_pem)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def new_private_key(kind: str = "ec") -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=4096)
    return ec.generate_private_key(ec.SECP384R1())


def key_to_pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def cert_to_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def load_cert(pem: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as e:
        raise CertificateError(f"not a PEM certificate: {e}") from None


def load_key(pem: str):
    try:
        return serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    except TypeError:
        raise CertificateError("the private key is protected by a passphrase; supply it unencrypted") from None
    except (ValueError, UnicodeEncodeError) as e:
        raise CertificateError(f"not a PEM private key: {e}") from None


def cert_fingerprint(cert_pem: str) -> str:
    """SHA-256 over the DER certificate, lower-case hex, as LXD prints it."""
    der = load_cert(cert_pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def check_pair(cert_pem: str, key_pem: str) -> None:
    """Raise CertificateError unless key_pem is the private half of cert_pem."""
    cert = load_cert(cert_pem)
    key = load_key(key_pem)
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    if cert.public_key().public_bytes(enc, pub) != key.public_key().public_bytes(enc, pub):
        raise CertificateError("the private key does not match the certificate")


def _builder(subject_cn: str, issuer: x509.Name, public_key, days: int) -> x509.CertificateBuilder:
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _ONE_DAY)
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def make_ca(common_name: str = "vmyard region CA", days: int = 3650) -> KeyPair:
    key = new_private_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        _builder(common_name, name, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return KeyPair(key_to_pem(key), cert_to_pem(cert))


def issue_certificate(
    ca: KeyPair,
    common_name: str,
    public_key,
    *,
    dns_names: tuple[str, ...] = (),
    server: bool = False,
    days: int = 3650,
) -> str:
    """Sign a leaf certificate for public_key with the CA; returns PEM."""
    ca_cert = load_cert(ca.cert_pem)
    ca_key = load_key(ca.key_pem)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(common_name, ca_cert.subject, public_key, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    names = [x509.DNSName(n) for n in (dns_names or (common_name,))]
    builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return cert_to_pem(builder.sign(ca_key, hashes.SHA256()))


def make_csr(common_name: str) -> tuple[str, str]:
    """A fresh key and a CSR for it: (key_pem, csr_pem).  The key never leaves."""
    key = new_private_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return key_to_pem(key), csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def load_csr(pem: str) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as e:
        raise CertificateError(f"not a PEM certificate request: {e}") from None
    if not csr.is_signature_valid:
        raise CertificateError("the certificate request's signature is invalid")
    return csr


def make_self_signed(common_name: str, *, days: int = 3650, kind: str = "rsa") -> KeyPair:
    """A self-signed client certificate, as LXD expects for trust."""
    key = new_private_key(kind)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        _builder(common_name, name, key.public_key(), days)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(key_to_pem(key), cert_to_pem(cert))


def new_system_id() -> str:
    """Short random ids in the MAAS style ("xkf7a3")."""
    alphabet = "abcdefghjkmnpqrstuvwxy3456789"
    raw = uuid.uuid4().int
    out = []
    for _ in range(6):
        raw, i = divmod(raw, len(alphabet))
        out.append(alphabet[i])
    return "".join(out)


def write_private(path: Path, data: str | bytes) -> None:
    """Write a file readable by its owner only, never briefly world-readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, raw)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
