"""The unit tests' PKI, built on the lab's (mxlens_lab.pki).

Scenario-shaped certificates (a root, an intermediate, a server leaf with the lab's OCSP, CRL
and caIssuers URLs) come from `lab_pki()`, the lab's own builder. `issue()` stays for what the
lab's builder cannot express and the certificate tests need: CN-only names, a CA issued by any
certificate, chosen serials, arbitrary EKU OIDs, iPAddress-only SANs, any validity window and
any signature hash. Keys and SHA-1 signatures come from the lab.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mxlens_lab.pki import PKI, ca_key_usage, new_key, sign_sha1
from probes.checks.certificates import parse_certificate
from probes.model.events import CertInfo

NOW = datetime.now(timezone.utc).replace(microsecond=0)
DAY = timedelta(days=1)


def ec_key() -> ec.EllipticCurvePrivateKey:
    key = new_key("ec")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def lab_pki() -> PKI:
    """The lab's PKI builder, for tests that need ordinary roots and server leaves. Its URLs
    point at a port nobody serves: tests that fetch OCSP or CRLs use the lab itself."""
    return PKI("http://127.0.0.1:9")


@dataclass
class Issued:
    cert: x509.Certificate
    key: Any

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def info(self) -> CertInfo:
        return parse_certificate(self.der)


def issue(
    cn: str,
    issuer: Issued | None = None,
    *,
    key: Any = None,
    ca: bool = False,
    san: tuple[str, ...] | None = None,
    ip_san: tuple[str, ...] = (),
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    hash_alg: Any = None,
    eku: tuple[x509.ObjectIdentifier, ...] | None = None,
    ocsp: tuple[str, ...] = (),
    crl: tuple[str, ...] = (),
    ca_issuers: tuple[str, ...] = (),
    serial: int | None = None,
) -> Issued:
    """Issue a certificate (self-signed when issuer is None). A leaf gets SAN = (cn,) unless
    san is given; san=() means no SAN extension at all. hash_alg=hashes.SHA1() makes a SHA-1
    signature (which cryptography refuses to create) through the lab's signer."""
    key = key or ec_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    signer_name = issuer.cert.subject if issuer else name
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(signer_name)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(not_before or NOW - 30 * DAY)
        .not_valid_after(not_after or NOW + 300 * DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    if ca:
        builder = builder.add_extension(
            ca_key_usage(),
            critical=True,
        )
    else:
        names: list[x509.GeneralName] = [
            x509.DNSName(n) for n in (san if san is not None else (cn,))
        ]
        import ipaddress

        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_san]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        usages = eku if eku is not None else (ExtendedKeyUsageOID.SERVER_AUTH,)
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    access = [
        x509.AccessDescription(
            x509.oid.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(u)
        )
        for u in ocsp
    ] + [
        x509.AccessDescription(
            x509.oid.AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(u)
        )
        for u in ca_issuers
    ]
    if access:
        builder = builder.add_extension(x509.AuthorityInformationAccess(access), critical=False)
    if crl:
        points = [
            x509.DistributionPoint([x509.UniformResourceIdentifier(u)], None, None, None)
            for u in crl
        ]
        builder = builder.add_extension(x509.CRLDistributionPoints(points), critical=False)
    if isinstance(hash_alg, hashes.SHA1):
        cert = sign_sha1(builder, signer_key)
    else:
        cert = builder.sign(signer_key, hash_alg or hashes.SHA256())
    return Issued(cert, key)


def rsa_key(bits: int) -> rsa.RSAPrivateKey:
    key = new_key(f"rsa{bits}")
    assert isinstance(key, rsa.RSAPrivateKey)
    return key
