"""The lab PKI: certificates a validator accepts (or rejects for the intended reason),
OCSP answers and CRLs. Pure cryptography, no sockets."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from mxlens_lab.pki import CA, PKI, Issued, server_context

BASE = "http://pki.lab.test:8080"


@pytest.fixture
def pki() -> PKI:
    return PKI(BASE)


def chain_of(pki: PKI) -> tuple[CA, CA]:
    root = pki.root("root-a")
    return root, pki.intermediate("int-a", root)


def verify(pki: PKI, leaf: Issued, name: str, intermediates: list[x509.Certificate]) -> None:
    store = Store(x509.load_pem_x509_certificates(pki.roots_pem()))
    verifier = PolicyBuilder().store(store).build_server_verifier(x509.DNSName(name))
    verifier.verify(leaf.cert, intermediates)


def ocsp_request(leaf: Issued, issuer: CA, alg: hashes.HashAlgorithm | None = None) -> bytes:
    req = ocsp.OCSPRequestBuilder().add_certificate(leaf.cert, issuer.cert, alg or hashes.SHA1())
    return req.build().public_bytes(serialization.Encoding.DER)


def check_sig(key: object, signature: bytes, data: bytes, alg: hashes.HashAlgorithm) -> None:
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, data, ec.ECDSA(alg))
    else:
        assert isinstance(key, rsa.RSAPublicKey)
        key.verify(signature, data, padding.PKCS1v15(), alg)


def test_healthy_chain_validates_for_its_name_only(pki: PKI) -> None:
    _, inter = chain_of(pki)
    leaf = pki.leaf(inter, ["mx1.healthy.lab.test", "mx2.healthy.lab.test"])
    verify(pki, leaf, "mx2.healthy.lab.test", [inter.cert])
    with pytest.raises(VerificationError):
        verify(pki, leaf, "other.lab.test", [inter.cert])
    with pytest.raises(VerificationError):  # without the intermediate there is no path
        verify(pki, leaf, "mx1.healthy.lab.test", [])


def test_extensions_of_leaf_and_intermediate(pki: PKI) -> None:
    root, inter = chain_of(pki)
    leaf = pki.leaf(inter, ["mx1.healthy.lab.test"])
    ext = leaf.cert.extensions
    assert ext.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == ["mx1.healthy.lab.test"]
    assert ext.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert ext.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    inter_ski = inter.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == inter_ski.digest
    aia = {
        d.access_method: d.access_location.value
        for d in ext.get_extension_for_class(x509.AuthorityInformationAccess).value
    }
    assert aia == {
        AuthorityInformationAccessOID.OCSP: f"{BASE}/ocsp/int-a",
        AuthorityInformationAccessOID.CA_ISSUERS: f"{BASE}/aia/int-a.der",
    }
    dp = ext.get_extension_for_class(x509.CRLDistributionPoints).value
    assert dp[0].full_name is not None and dp[0].full_name[0].value == f"{BASE}/crl/int-a.crl"
    bc = inter.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca and bc.path_length == 0
    ku = inter.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    # The intermediate's own AIA points at the root's endpoints.
    inter_aia = inter.cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    assert f"{BASE}/ocsp/root-a" in [d.access_location.value for d in inter_aia.value]
    assert root.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_url_switches_and_overrides(pki: PKI) -> None:
    _, inter = chain_of(pki)
    bare = pki.leaf(inter, ["a.lab.test"], ocsp=False, crl=False, aia=False)
    with pytest.raises(x509.ExtensionNotFound):
        bare.cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    with pytest.raises(x509.ExtensionNotFound):
        bare.cert.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    moved = pki.leaf(
        inter,
        ["b.lab.test"],
        url_overrides={"ocsp": "http://dead.lab.test/ocsp", "crl": "http://x/c"},
    )
    aia = moved.cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    urls = [d.access_location.value for d in aia]
    assert "http://dead.lab.test/ocsp" in urls and f"{BASE}/aia/int-a.der" in urls
    dp = moved.cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert dp[0].full_name is not None and dp[0].full_name[0].value == "http://x/c"


def test_fault_certificates(pki: PKI) -> None:
    _, inter = chain_of(pki)
    now = datetime.now(timezone.utc)
    expired = pki.leaf(
        inter,
        ["old.lab.test"],
        not_before=now - timedelta(days=100),
        not_after=now - timedelta(days=1),
    )
    assert expired.cert.not_valid_after_utc < now
    with pytest.raises(VerificationError):
        verify(pki, expired, "old.lab.test", [inter.cert])

    no_san = pki.leaf(inter, ["cn-only.lab.test"], san=False)
    with pytest.raises(x509.ExtensionNotFound):
        no_san.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)

    no_eku = pki.leaf(inter, ["x.lab.test"], eku=None)
    with pytest.raises(x509.ExtensionNotFound):
        no_eku.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    client_only = pki.leaf(inter, ["y.lab.test"], eku=["clientAuth"])
    with pytest.raises(VerificationError):
        verify(pki, client_only, "y.lab.test", [inter.cert])

    weak = pki.leaf(inter, ["weak.lab.test"], key="rsa1024")
    assert isinstance(weak.cert.public_key(), rsa.RSAPublicKey)
    assert weak.cert.public_key().key_size == 1024  # type: ignore[union-attr]

    selfie = pki.leaf(inter, ["self.lab.test"], self_signed=True)
    assert selfie.issuer is None and selfie.cert.issuer == selfie.cert.subject
    with pytest.raises(VerificationError):
        verify(pki, selfie, "self.lab.test", [])


@pytest.mark.parametrize("root_key", ["ec", "rsa2048"])
def test_sha1_signed_leaf(pki: PKI, root_key: str) -> None:
    root = pki.root("sha1-root", key=root_key)
    leaf = pki.leaf(root, ["sha1.lab.test"], sig_hash="sha1")
    assert leaf.cert.signature_hash_algorithm is not None
    assert leaf.cert.signature_hash_algorithm.name == "sha1"
    # A real SHA-1 signature by the issuer, not a relabelled SHA-256 one.
    check_sig(
        root.cert.public_key(), leaf.cert.signature, leaf.cert.tbs_certificate_bytes, hashes.SHA1()
    )
    # Everything else of the certificate survived the re-signing.
    assert leaf.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert leaf.cert.issuer == root.cert.subject
    # Modern validators refuse it, which is the point of the scenario.
    with pytest.raises(VerificationError):
        verify(pki, leaf, "sha1.lab.test", [])
    # And a TLS server can still present it.
    server_context(leaf)


def test_pem_chain_and_roots(pki: PKI) -> None:
    root, inter = chain_of(pki)
    pki.root("stranger", trusted=False)
    leaf = pki.leaf(inter, ["a.lab.test"])
    chain = x509.load_pem_x509_certificates(leaf.pem_chain())
    assert chain == [leaf.cert, inter.cert]  # never the root
    assert x509.load_pem_x509_certificates(leaf.pem_chain(include_intermediates=False)) == [
        leaf.cert
    ]
    assert x509.load_pem_x509_certificates(pki.roots_pem()) == [root.cert]
    assert (
        serialization.load_pem_private_key(leaf.key_pem(), None).public_key()
        == leaf.cert.public_key()
    )
    with pytest.raises(ValueError):
        pki.root("root-a")


def test_ocsp_good_revoked_unknown(pki: PKI) -> None:
    root, inter = chain_of(pki)
    leaf = pki.leaf(inter, ["a.lab.test"])
    for alg in (hashes.SHA1(), hashes.SHA256()):
        resp = ocsp.load_der_ocsp_response(
            pki.ocsp_response("int-a", ocsp_request(leaf, inter, alg))
        )
        assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
        assert resp.certificate_status == ocsp.OCSPCertStatus.GOOD
        assert resp.serial_number == leaf.cert.serial_number
        assert resp.next_update_utc is not None
        assert resp.this_update_utc < datetime.now(timezone.utc) < resp.next_update_utc
        assert resp.signature_hash_algorithm is not None
        check_sig(
            inter.cert.public_key(),
            resp.signature,
            resp.tbs_response_bytes,
            resp.signature_hash_algorithm,
        )
    inter.revoke(leaf.cert)
    resp = ocsp.load_der_ocsp_response(pki.ocsp_response("int-a", ocsp_request(leaf, inter)))
    assert resp.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert resp.revocation_time_utc is not None
    # Asked of the wrong CA: "unknown", not a lie.
    resp = ocsp.load_der_ocsp_response(pki.ocsp_response("root-a", ocsp_request(leaf, inter)))
    assert resp.certificate_status == ocsp.OCSPCertStatus.UNKNOWN
    assert (
        ocsp.load_der_ocsp_response(
            pki.ocsp_response("nope", ocsp_request(leaf, inter))
        ).response_status
        == ocsp.OCSPResponseStatus.UNAUTHORIZED
    )
    assert (
        ocsp.load_der_ocsp_response(pki.ocsp_response("int-a", b"not DER")).response_status
        == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    )


def test_ocsp_bad_signature_and_stale(pki: PKI) -> None:
    _, inter = chain_of(pki)
    leaf = pki.leaf(inter, ["a.lab.test"])
    bad = ocsp.load_der_ocsp_response(
        pki.ocsp_response("int-a", ocsp_request(leaf, inter), mode="bad-signature")
    )
    assert bad.responder_name == inter.cert.subject  # claims to be the CA...
    assert bad.signature_hash_algorithm is not None
    with pytest.raises(InvalidSignature):  # ...but is not
        check_sig(
            inter.cert.public_key(),
            bad.signature,
            bad.tbs_response_bytes,
            bad.signature_hash_algorithm,
        )
    stale = ocsp.load_der_ocsp_response(
        pki.ocsp_response("int-a", ocsp_request(leaf, inter), mode="stale")
    )
    assert stale.next_update_utc is not None and stale.next_update_utc < datetime.now(timezone.utc)


def test_crl_modes(pki: PKI) -> None:
    _, inter = chain_of(pki)
    leaf = pki.leaf(inter, ["a.lab.test"])
    crl = x509.load_der_x509_crl(pki.crl_der("int-a"))
    assert crl.is_signature_valid(inter.cert.public_key())  # type: ignore[arg-type]
    assert crl.issuer == inter.cert.subject
    assert crl.get_revoked_certificate_by_serial_number(leaf.cert.serial_number) is None
    now = datetime.now(timezone.utc)
    assert crl.next_update_utc is not None and crl.last_update_utc < now < crl.next_update_utc
    inter.revoke(leaf.cert)
    crl = x509.load_der_x509_crl(pki.crl_der("int-a"))
    assert crl.get_revoked_certificate_by_serial_number(leaf.cert.serial_number) is not None
    expired = x509.load_der_x509_crl(pki.crl_der("int-a", mode="expired"))
    assert expired.next_update_utc is not None and expired.next_update_utc < now
    assert expired.is_signature_valid(inter.cert.public_key())  # type: ignore[arg-type]
    forged = x509.load_der_x509_crl(pki.crl_der("int-a", mode="bad-signature"))
    assert not forged.is_signature_valid(inter.cert.public_key())  # type: ignore[arg-type]
    assert x509.load_der_x509_certificate(pki.aia_der("int-a")) == inter.cert
