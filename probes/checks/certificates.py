"""Certificates: parsing X.509 into CertInfo, and validating a server's chain.

`parse_certificate` never raises for an odd certificate: each field falls back on its own,
so one unsupported extension does not hide the rest of what the server sent.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from probes.model.events import (
    CertInfo,
)
from probes.model.findings import EXPIRES_SOON as EXPIRES_SOON  # re-exported for chain.py

if TYPE_CHECKING:
    pass

T = TypeVar("T")

_EKU_NAMES: dict[str, str] = {
    ExtendedKeyUsageOID.SERVER_AUTH.dotted_string: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING.dotted_string: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION.dotted_string: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING.dotted_string: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING.dotted_string: "OCSPSigning",
    "2.5.29.37.0": "anyExtendedKeyUsage",
}


def _safe(fn: Callable[[], T], default: T) -> T:
    # Certificates from the wild break parsers in many small ways; one broken field must not
    # cost the user every other field.
    try:
        return fn()
    except Exception:  # noqa: BLE001 - deliberately broad, see above
        return default


def iso_utc(moment: datetime) -> str:
    """'YYYY-MM-DDTHH:MM:SSZ' for an aware or naive-UTC datetime."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _not_before(cert: x509.Certificate) -> datetime:
    try:
        return cert.not_valid_before_utc
    except AttributeError:  # cryptography < 42
        return cert.not_valid_before.replace(tzinfo=timezone.utc)


def _not_after(cert: x509.Certificate) -> datetime:
    try:
        return cert.not_valid_after_utc
    except AttributeError:  # cryptography < 42
        return cert.not_valid_after.replace(tzinfo=timezone.utc)


def not_before(cert: x509.Certificate) -> datetime:
    """notBefore as an aware UTC datetime."""
    return _not_before(cert)


def not_after(cert: x509.Certificate) -> datetime:
    """notAfter as an aware UTC datetime."""
    return _not_after(cert)


def _name_text(name: x509.Name) -> str:
    try:
        return name.rfc4514_string()
    except Exception:  # noqa: BLE001
        parts = []
        for attr in name:
            value = attr.value
            text = value if isinstance(value, str) else value.decode("utf-8", "replace")
            parts.append(f"{attr.oid.dotted_string}={text}")
        return ",".join(parts)


def _common_name(cert: x509.Certificate) -> str | None:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        return None
    value = attrs[-1].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _san(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    out: list[str] = list(ext.get_values_for_type(x509.DNSName))
    out += [f"IP:{ip}" for ip in ext.get_values_for_type(x509.IPAddress)]
    return tuple(out)


def has_san_extension(cert: x509.Certificate) -> bool:
    """True when the certificate carries a subjectAltName extension at all."""
    try:
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except Exception:  # noqa: BLE001
        return False
    return True


def _key(cert: x509.Certificate) -> tuple[str, int]:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    return type(key).__name__, 0


def _sig_hash(cert: x509.Certificate) -> str | None:
    algo = cert.signature_hash_algorithm
    if algo is None:
        # Ed25519/Ed448 have no separate hash.
        return _safe(lambda: cert.signature_algorithm_oid._name, None)
    return algo.name


def _eku(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(_EKU_NAMES.get(oid.dotted_string, oid.dotted_string) for oid in ext)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _aia(cert: x509.Certificate) -> tuple[tuple[str, ...], tuple[str, ...]]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return (), ()
    ocsp: list[str] = []
    issuers: list[str] = []
    for desc in ext:
        if not isinstance(desc.access_location, x509.UniformResourceIdentifier):
            continue
        url = desc.access_location.value
        if desc.access_method == x509.oid.AuthorityInformationAccessOID.OCSP:
            ocsp.append(url)
        elif desc.access_method == x509.oid.AuthorityInformationAccessOID.CA_ISSUERS:
            issuers.append(url)
    return tuple(ocsp), tuple(issuers)


def _crl_urls(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return ()
    out: list[str] = []
    for point in ext:
        for gn in point.full_name or ():
            if isinstance(gn, x509.UniformResourceIdentifier):
                out.append(gn.value)
    return tuple(out)


def _spki_sha256(cert: x509.Certificate) -> str:
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def cert_info(cert: x509.Certificate, der: bytes | None = None) -> CertInfo:
    """CertInfo of an already loaded certificate."""
    if der is None:
        der = _safe(lambda: cert.public_bytes(serialization.Encoding.DER), b"")
    subject = _safe(lambda: _name_text(cert.subject), "")
    issuer = _safe(lambda: _name_text(cert.issuer), "")
    no_urls: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
    ocsp, issuers = _safe(lambda: _aia(cert), no_urls)
    key_type, key_bits = _safe(lambda: _key(cert), ("unknown", 0))
    raw_subject = _safe(lambda: cert.subject.public_bytes(), b"")
    raw_issuer = _safe(lambda: cert.issuer.public_bytes(), b"")
    return CertInfo(
        subject=subject,
        issuer=issuer,
        serial=_safe(lambda: format(cert.serial_number, "x"), ""),
        not_before=_safe(lambda: iso_utc(_not_before(cert)), ""),
        not_after=_safe(lambda: iso_utc(_not_after(cert)), ""),
        san=_safe(lambda: _san(cert), ()),
        common_name=_safe(lambda: _common_name(cert), None),
        key_type=key_type,
        key_bits=key_bits,
        signature_hash=_safe(lambda: _sig_hash(cert), None),
        eku=_safe(lambda: _eku(cert), ()),
        is_ca=_safe(lambda: _is_ca(cert), False),
        self_issued=bool(raw_subject) and raw_subject == raw_issuer,
        ocsp_urls=ocsp,
        ca_issuers_urls=issuers,
        crl_urls=_safe(lambda: _crl_urls(cert), ()),
        sha256=hashlib.sha256(der).hexdigest(),
        sha1=hashlib.sha1(der).hexdigest(),  # noqa: S324 - a fingerprint, not security
        spki_sha256=_safe(lambda: _spki_sha256(cert), ""),
        der=der,
    )


def parse_certificate(der: bytes) -> CertInfo:
    """Parse one DER certificate. Never raises: an unparsable blob gives a CertInfo whose
    subject says so, with the fingerprints of the bytes received."""
    # Odd certificates (negative serials...) make cryptography warn on stderr, which would
    # scribble over the terminal UI; the oddity is not ours to report there.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            cert = x509.load_der_x509_certificate(der)
            return cert_info(cert, der)
        except Exception as exc:  # noqa: BLE001
            error = str(exc)
    return CertInfo(
        subject=f"(unparsable certificate: {error})",
        issuer="",
        serial="",
        not_before="",
        not_after="",
        san=(),
        common_name=None,
        key_type="unknown",
        key_bits=0,
        signature_hash=None,
        eku=(),
        is_ca=False,
        self_issued=False,
        ocsp_urls=(),
        ca_issuers_urls=(),
        crl_urls=(),
        sha256=hashlib.sha256(der).hexdigest(),
        sha1=hashlib.sha1(der).hexdigest(),  # noqa: S324
        spki_sha256="",
        der=der,
    )


# --------------------------------------------------------------------------- bundles


def load_certificates(body: bytes) -> list[x509.Certificate]:
    """Certificates in an HTTP body as CAs publish them: DER, PEM (one or more), or PKCS#7
    "certs-only" in DER or PEM. Empty list when nothing parses."""
    from cryptography.hazmat.primitives.serialization import pkcs7

    data = body.strip() if body.lstrip().startswith(b"-----") else body
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if data.startswith(b"-----"):
            if b"PKCS7" in data[:40]:
                try:
                    return list(pkcs7.load_pem_pkcs7_certificates(data))
                except Exception:  # noqa: BLE001
                    return []
            from probes.net.trust import parse_pem_bundle

            return parse_pem_bundle(data)[0]
        try:
            return [x509.load_der_x509_certificate(data)]
        except Exception:  # noqa: BLE001
            pass
        try:
            return list(pkcs7.load_der_pkcs7_certificates(data))
        except Exception:  # noqa: BLE001
            return []


# --------------------------------------------------------------------------- validation

MAX_AIA_LEVELS = 4
MAX_DEPTH = 8
WEAK_HASHES = ("sha1", "md5")


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _label(info: CertInfo) -> str:
    return f"CN={info.common_name}" if info.common_name else (info.subject or info.sha256[:16])
