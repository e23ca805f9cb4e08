"""Pure pieces: parameter parsing, AMP arguments, certificates, enrolment proofs, config."""

from __future__ import annotations

import attrs
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.protocols import amp

from common import tls
from common.config import ConfigError, parse_endpoint
from common.enrolment import EnrolRequest, EnrolResponse
from common.rpc.arguments import AttrsArgument, PayloadTooLarge, decode_value, encode_value
from common.rpc.wire import RackHello
from region.api.auth import parse_oauth
from region.services.auth import signature_matches
from region.api.errors import BadRequest, Unauthorized
from region.api.params import Form, Params, parse_body, parse_query
from region.cli.table import human_bytes, render_table


# -- request parameters -----------------------------------------------------

def test_urlencoded_and_repeated_fields():
    p = Params()
    parse_query(b"op=&tags=a&tags=b,c", p)
    assert p.get("op") == ""
    assert p.getlist("tags") == ["a", "b,c"]
    assert p.getlist("tags", split_commas=True) == ["a", "b", "c"]


def test_multipart_base64_parts_and_repeats():
    body = (b'--B\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: form-data; name="tags"\r\n\r\n'
            b"Zm9v\r\n--B\r\nContent-Disposition: form-data; name=\"tags\"\r\n\r\nbar\r\n--B--\r\n")
    p = Params()
    parse_body('multipart/form-data; boundary="B"', body, p)
    assert p.getlist("tags") == ["foo", "bar"]


def test_json_body_and_bad_json():
    p = Params()
    parse_body("application/json", b'{"name": "x", "tags": ["a", "b"], "flag": true}', p)
    assert p.get("name") == "x" and p.getlist("tags") == ["a", "b"] and p.get("flag") == "true"
    with pytest.raises(BadRequest):
        parse_body("application/json", b"{nope", Params())


def test_non_utf8_is_a_bad_request():
    with pytest.raises(BadRequest, match="UTF-8"):
        parse_body("application/x-www-form-urlencoded", b"name=\xff", Params())


def test_form_collects_every_error():
    form = Form(Params({"name": ["bad name"], "description": ["x" * 2000]}))
    form.name(required=True)
    form.text("description")
    with pytest.raises(BadRequest) as e:
        form.check()
    assert set(e.value.errors) == {"name", "description"}


# -- OAuth ------------------------------------------------------------------

def test_oauth_header_parsing_unescapes_and_checks():
    header = ('OAuth realm="OAuth", oauth_nonce="1", oauth_timestamp="2", oauth_version="1.0", '
              'oauth_signature_method="PLAINTEXT", oauth_consumer_key="ck", oauth_token="tk", '
              'oauth_signature="%26s%2Fecret"')
    params = parse_oauth(header, {})
    assert params["oauth_signature"] == "&s/ecret"
    assert signature_matches(params["oauth_signature"], "s/ecret") and not signature_matches(params["oauth_signature"], "other")
    assert parse_oauth(None, {}) is None
    with pytest.raises(Unauthorized, match="oauth_timestamp"):
        parse_oauth(header.replace('oauth_timestamp="2"', 'oauth_timestamp="x"'), {})


# -- AMP arguments ----------------------------------------------------------

@given(hostname=st.text(max_size=200), version=st.text(max_size=50), index=st.integers(0, 2**31))
@settings(max_examples=200, deadline=None)
def test_attrs_argument_round_trips(hostname, version, index):
    value = RackHello(hostname=hostname, version=version, connection_index=index)
    arg = AttrsArgument(RackHello)
    assert arg.fromString(arg.toString(value)) == value


def test_a_remembered_argument_encodes_and_decodes_as_an_unremembered_one():
    from common.models import HostTarget

    plain, remembered = AttrsArgument(HostTarget), AttrsArgument(HostTarget, remember=2)
    targets = [HostTarget("lxd", f"10.0.0.{i}:8443", "p", "CERT", f"KEY{i}", None) for i in range(4)]
    for target in targets + targets[::-1] + targets:  # evicted and encoded again on the way
        data = remembered.toString(target)
        assert data == plain.toString(target)
        assert remembered.fromString(data) == target == plain.fromString(data)
    assert len(remembered._remembered._encoded) == len(remembered._remembered._decoded) == 2
    import attrs

    @attrs.define
    class Mutable:
        x: int

    with pytest.raises(TypeError, match="frozen attrs"):
        AttrsArgument(Mutable, remember=8)  # it could change under its remembered encoding


def test_large_values_are_compressed_and_oversize_refused():
    compressible = RackHello(hostname="a" * 100_000, version="v")
    data = encode_value(compressible)
    assert data[:1] == b"z" and len(data) < amp.MAX_VALUE_LENGTH
    assert decode_value(data, RackHello) == compressible
    import os

    random_text = os.urandom(2_200_000).hex()  # > 32 AMP values even compressed
    with pytest.raises(PayloadTooLarge, match="RackHello"):
        encode_value(RackHello(hostname=random_text, version=""))


def test_values_over_one_amp_value_are_split_and_rejoined_through_a_box():
    import os

    class Carry(amp.Command):
        arguments = [(b"hello", AttrsArgument(RackHello)), (b"other", amp.Integer())]
        response = []

    big = RackHello(hostname=os.urandom(100_000).hex(), version="v")  # ~200 kB, incompressible-ish
    box = Carry.makeArguments({"hello": big, "other": 7}, None)
    assert {b"hello", b"hello.1"} <= set(box)
    assert all(len(v) <= amp.MAX_VALUE_LENGTH for v in box.values())
    # Serialise to bytes and parse back, as a peer would.
    wire = amp.AmpBox(box).serialize()
    parser = amp.BinaryBoxProtocol(amp.BoxDispatcher(None))
    received = []
    parser.boxReceiver = type("R", (), {"ampBoxReceived": lambda self, b: received.append(b),
                                        "startReceivingBoxes": lambda self, s: None,
                                        "stopReceivingBoxes": lambda self, r: None})()
    parser.dataReceived(wire)
    assert Carry.parseArguments(received[0], None) == {"hello": big, "other": 7}


# -- certificates -------------------------------------------------------------

def test_issued_certificates_chain_to_the_ca_and_pairs_are_checked():
    ca = tls.make_ca()
    key_pem, csr_pem = tls.make_csr("rack1")
    cert = tls.issue_certificate(ca, "rack1", tls.load_csr(csr_pem).public_key())
    tls.check_pair(cert, key_pem)
    assert tls.load_cert(cert).issuer == tls.load_cert(ca.cert_pem).subject
    other = tls.make_self_signed("x", kind="ec")
    with pytest.raises(tls.CertificateError, match="does not match"):
        tls.check_pair(cert, other.key_pem)


def test_passphrase_and_garbage_keys_are_refused_clearly():
    key = tls.new_private_key()
    encrypted = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(b"pw")).decode()
    with pytest.raises(tls.CertificateError, match="passphrase"):
        tls.load_key(encrypted)
    with pytest.raises(tls.CertificateError, match="not a PEM private key"):
        tls.load_key("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with pytest.raises(tls.CertificateError, match="not a PEM certificate"):
        tls.load_cert("hello")


def test_fingerprint_is_sha256_of_der():
    pair = tls.make_self_signed("fp", kind="ec")
    assert len(pair.fingerprint) == 64 and pair.fingerprint == tls.cert_fingerprint(pair.cert_pem)


# -- enrolment proofs ----------------------------------------------------------

def test_enrolment_proofs_bind_secret_nonce_and_payload():
    request = EnrolRequest.make("s3cret", "rack1", "CSR")
    assert request.proves("s3cret") and not request.proves("other")
    assert not attrs.evolve(request, csr="EVIL").proves("s3cret")
    response = EnrolResponse.make("s3cret", request, "abc123", "CERT", "CA", 5250)
    assert response.proves("s3cret", request)
    assert not attrs.evolve(response, ca="ATTACKER CA").proves("s3cret", request)
    assert not response.proves("s3cret", EnrolRequest.make("s3cret", "rack1", "CSR")), "fresh nonce"


# -- config and CLI helpers ----------------------------------------------------

@pytest.mark.parametrize("value,expected", [
    ("127.0.0.1:5240", ("127.0.0.1", 5240)), ("[::1]:80", ("::1", 80)), (":9", ("0.0.0.0", 9)),
    ("host", ("host", 5240)), ("::1", ("::1", 5240)),
])
def test_parse_endpoint(value, expected):
    assert parse_endpoint(value, 5240) == expected


def test_parse_endpoint_bad_port():
    with pytest.raises(ConfigError, match="port"):
        parse_endpoint("h:http", 1)


def test_table_and_sizes():
    out = render_table([("NAME", "name"), ("ZONE", "zone.name")], [{"name": "a", "zone": {"name": "z"}}])
    assert out.splitlines() == ["NAME  ZONE", "a     z"]
    assert human_bytes(1536) == "1.5 KiB" and human_bytes(None) == "-"


def test_loggable_escapes_control_characters_and_caps_length():
    from common.logsafe import loggable

    assert loggable("evil\nFAKE LOG LINE") == "evil\\nFAKE LOG LINE"
    assert "\n" not in loggable("a\r\n\x1b[31m") and "\x1b" not in loggable("a\r\n\x1b[31m")
    long = loggable("x" * 1_000_000)
    assert len(long) < 250 and long.endswith("(1000000 characters)")
    assert loggable(None) == "-" and loggable(b"host\n") == "host\\n"


def test_what_start_made_is_kept_out_of_later_collections():
    import gc

    from common.gcpause import freeze_what_start_made

    class Cycle:
        pass

    kept = Cycle()
    kept.me = kept  # a cycle alive at "start"
    try:
        freeze_what_start_made()
        assert gc.get_freeze_count() > 0
        assert not any(o is kept for o in gc.get_objects())  # not walked by any collection
        later = Cycle()
        later.me = later
        assert any(o is later for o in gc.get_objects())  # what comes after is collected as before
    finally:
        gc.unfreeze()
