"""Certificate parsing and loading (probes/checks/certificates.py), on a private PKI."""

from __future__ import annotations

from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID

from probes.checks.certificates import load_certificates, parse_certificate
from tests.support.pki import Issued, issue, rsa_key


def test_parse_reads_every_field() -> None:
    root = issue("Root", ca=True)
    leaf = issue(
        "mx.example.test",
        root,
        san=("mx.example.test", "mail.example.test"),
        ip_san=("192.0.2.1",),
        eku=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
        ocsp=("http://ocsp.example.test/",),
        crl=("http://crl.example.test/ca.crl",),
        ca_issuers=("http://aia.example.test/ca.der",),
        serial=0xABCDEF,
    )
    info = parse_certificate(leaf.der)
    assert info.subject == "CN=mx.example.test"
    assert info.issuer == "CN=Root"
    assert info.common_name == "mx.example.test"
    assert info.san == ("mx.example.test", "mail.example.test", "IP:192.0.2.1")
    assert info.serial == "abcdef"
    assert info.key_type == "EC" and info.key_bits == 256
    assert info.signature_hash == "sha256"
    assert info.eku == ("serverAuth", "clientAuth")
    assert info.ocsp_urls == ("http://ocsp.example.test/",)
    assert info.crl_urls == ("http://crl.example.test/ca.crl",)
    assert info.ca_issuers_urls == ("http://aia.example.test/ca.der",)
    assert not info.is_ca and not info.self_issued
    assert info.not_after == leaf.cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert info.not_after.endswith("Z") and "T" in info.not_after
    assert len(info.sha256) == 64 and len(info.sha1) == 40 and len(info.spki_sha256) == 64
    assert info.der == leaf.der
    root_info = parse_certificate(root.der)
    assert root_info.is_ca and root_info.self_issued and root_info.san == ()


def test_parse_never_raises_on_garbage() -> None:
    info = parse_certificate(b"\x30\x03\x02\x01")
    assert info.subject.startswith("(unparsable certificate")
    assert len(info.sha256) == 64


def test_parse_rsa_key_size() -> None:
    leaf = issue("rsa.example.test", key=rsa_key(1024))
    info = parse_certificate(leaf.der)
    assert (info.key_type, info.key_bits) == ("RSA", 1024)


def test_load_certificates_der_pem_pkcs7(pki: dict[str, Issued]) -> None:
    inter, root = pki["inter"], pki["root"]
    assert [c.subject for c in load_certificates(inter.der)] == [inter.cert.subject]
    assert len(load_certificates(inter.pem + root.pem)) == 2
    p7_der = pkcs7.serialize_certificates([inter.cert], Encoding.DER)
    p7_pem = pkcs7.serialize_certificates([inter.cert, root.cert], Encoding.PEM)
    assert [c.subject for c in load_certificates(p7_der)] == [inter.cert.subject]
    assert len(load_certificates(p7_pem)) == 2
    assert load_certificates(b"<html>nope</html>") == []
