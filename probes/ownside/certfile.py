"""`mxlens cert FILE`: check a certificate file before it is installed or named in a connector.

Reads PEM (a chain, perhaps with its key), DER, PKCS#7 (.p7b) or PKCS#12 / PFX as Windows
exports it. The
chain is validated by checks/chain.py exactly as a server's chain is (trust, completeness,
dates, names, key and signature strength, serverAuth), then what a sending server needs on top
(clientAuth), whether the private key belongs to the leaf, Exchange's `<I>issuer<S>subject`
certificate name, and the chain's OCSP/CRL/caIssuers URLs from here with checks/endpoints.py.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from probes.checks.certificates import cert_info, load_certificates
from probes.checks.chain import validate_chain
from probes.checks.endpoints import check_endpoints
from probes.model.errors import CheckError
from probes.model.events import (
    CertInfo,
    ChainValidated,
    EndpointChecked,
    Finding,
    FindingRaised,
    Where,
)
from probes.model.findings import exit_code, raise_finding, sort_findings, worst
from probes.model.options import Options
from probes.ownside.judge import ReceiverProfile, grade_for, verdict
from probes.ownside.report import cert_json, endpoint_json, finding_json, validation_json

SCHEMA = "mxlens/cert/1"
MAX_FILE = 1_000_000
FileFormat = Literal["pem", "der", "pkcs7", "pkcs12"]
_PEM_KEY = re.compile(
    rb"-----BEGIN (?:RSA |EC |ENCRYPTED )?PRIVATE KEY-----\s.*?-----END (?:RSA |EC |ENCRYPTED )?PRIVATE KEY-----",
    re.S,
)
_EXCHANGE_NAME = re.compile(r"^\s*<I>(?P<issuer>.*?)<S>(?P<subject>.*?)\s*$", re.S | re.I)


class PasswordNeeded(CheckError):
    """The file (or its key) is encrypted and no password was given."""


@dataclass
class CertFile:
    path: str
    format: FileFormat
    certs: list[x509.Certificate]  # leaf first
    key: Any | None
    key_source: str | None = None  # "file", "--key FILE"


@dataclass
class CertReport:
    file: CertFile
    chain: tuple[CertInfo, ...]
    validation: ChainValidated | None = None
    endpoints: list[EndpointChecked] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    key_matches: bool | None = None
    expect_name: str | None = None
    receiver: ReceiverProfile | None = None
    verdict: str = ""

    def exit_code(self) -> int:
        return exit_code(self.findings)

    def to_json(self, version: str) -> dict[str, Any]:
        key = self.file.key
        return {
            "schema": SCHEMA,
            "version": version,
            "file": self.file.path,
            "format": self.file.format,
            "certificates": [cert_json(c, "file") for c in self.chain],
            "key": {
                "present": key is not None,
                "source": self.file.key_source,
                "matches": self.key_matches,
                "type": _key_type(key) if key is not None else None,
            },
            "expect_name": self.expect_name,
            "validation": validation_json(self.validation),
            "endpoints": [endpoint_json(e) for e in self.endpoints],
            "connector": None
            if self.receiver is None
            else {"name": self.receiver.name, "title": self.receiver.title},
            "verdict": self.verdict,
            "worst": worst(self.findings),
            "exit": self.exit_code(),
            "findings": [finding_json(f) for f in sort_findings(self.findings)],
        }


def _key_type(key: Any) -> str:
    size = getattr(key, "key_size", None)
    curve = getattr(key, "curve", None)
    name = type(key).__name__.replace("PrivateKey", "").lstrip("_")
    if curve is not None:
        return f"EC {curve.name}"
    return f"{name} {size}" if size else name


# --------------------------------------------------------------------------- reading


def _read(path: str, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CheckError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE:
        raise CheckError(f"{what} {path} is larger than {MAX_FILE} bytes: not a certificate file")
    if not data.strip():
        raise CheckError(f"{what} {path} is empty")
    return data


def _pem_key(data: bytes, password: bytes | None, path: str) -> Any | None:
    match = _PEM_KEY.search(data)
    if match is None:
        return None
    block = match.group(0)
    encrypted = b"ENCRYPTED" in block[:40] or b"Proc-Type: 4,ENCRYPTED" in block
    if encrypted and password is None:
        raise PasswordNeeded(f"the private key in {path} is encrypted: give --password-file F")
    try:
        return serialization.load_pem_private_key(block, password=password if encrypted else None)
    except (ValueError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "unreadable"
        if encrypted:
            raise CheckError(f"cannot decrypt the private key in {path}: wrong password") from None
        raise CheckError(f"cannot read the private key in {path}: {reason}") from None


def _der_key(data: bytes, password: bytes | None) -> Any | None:
    try:
        return serialization.load_der_private_key(data, password=password)
    except (ValueError, TypeError):
        return None


def read_cert_file(
    path: str, *, password: bytes | None = None, key_path: str | None = None
) -> CertFile:
    """Read a certificate file. PasswordNeeded when it is encrypted and password is None;
    CheckError (one line) for anything unreadable or a wrong password."""
    data = _read(path, "certificate file")
    fmt: FileFormat
    key: Any | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if b"-----BEGIN" in data:
            from probes.net.trust import parse_pem_bundle

            fmt = "pem"
            certs, errors = parse_pem_bundle(data)
            if not certs and b"PKCS7-----" in data:
                certs, fmt = load_certificates(data), "pkcs7"
            if not certs:
                reason = errors[0] if errors else "no certificate in it"
                raise CheckError(f"cannot read {path}: {reason}")
            key = _pem_key(data, password, path)
        else:
            try:
                certs = [x509.load_der_x509_certificate(data)]
                fmt = "der"
            except ValueError:
                # A .p7b is how Windows exports a chain without its key.
                certs = load_certificates(data)
                fmt = "pkcs7"
                if not certs:
                    fmt = "pkcs12"
                    certs, key = _pkcs12(data, password, path)
    key_source = "file" if key is not None else None
    if key_path is not None:
        key_data = _read(key_path, "--key")
        key = (
            _pem_key(key_data, password, key_path)
            if b"-----BEGIN" in key_data
            else _der_key(key_data, password)
        )
        if key is None:
            raise CheckError(f"cannot read --key {key_path}: no private key in it")
        key_source = f"--key {key_path}"
    return CertFile(path, fmt, _leaf_first(certs, key), key, key_source)


def _pkcs12(data: bytes, password: bytes | None, path: str) -> tuple[list[x509.Certificate], Any]:
    attempts: list[bytes | None] = [password] if password is not None else [None, b""]
    last: Exception | None = None
    for attempt in attempts:
        try:
            bundle = pkcs12.load_pkcs12(data, attempt)
        except ValueError as exc:
            last = exc
            continue
        certs: list[x509.Certificate] = []
        if bundle.cert is not None:
            certs.append(bundle.cert.certificate)
        certs += [c.certificate for c in bundle.additional_certs]
        if not certs:
            raise CheckError(f"{path} is a PKCS#12 file without a certificate")
        return certs, bundle.key
    text = str(last or "")
    if "password" not in text.lower() and "mac" not in text.lower():
        raise CheckError(
            f"cannot read {path}: not PEM, DER or PKCS#12 ({text.splitlines()[0] if text else 'unknown format'})"
        )
    if password is None:
        raise PasswordNeeded(
            f"{path} is a password-protected PKCS#12 file: give --password-file F "
            "(or run on a terminal to be asked)"
        )
    raise CheckError(f"cannot open {path}: wrong password for this PKCS#12 file")


def _spki(key_or_cert: Any) -> bytes:
    public = key_or_cert.public_key()
    return bytes(
        public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _leaf_first(certs: list[x509.Certificate], key: Any | None) -> list[x509.Certificate]:
    """The leaf first: the certificate of the key when there is a key, else the first
    non-CA certificate. Windows exports chains in no fixed order."""
    leaf: x509.Certificate | None = None
    if key is not None:
        want = _spki(key)
        leaf = next((c for c in certs if _spki(c) == want), None)
    if leaf is None:
        leaf = next((c for c in certs if not _is_ca(c)), certs[0])
    return [leaf, *[c for c in certs if c is not leaf]]


# --------------------------------------------------------------------------- names


def _rdns(text: str) -> list[tuple[str, str]]:
    """'CN=a, O=B Inc, C=US' -> [('cn', 'a'), ('o', 'b inc'), ('c', 'us')]; commas escaped
    with a backslash or inside quotes stay in the value."""
    parts: list[str] = []
    current = ""
    quoted = False
    escaped = False
    for ch in text:
        if escaped:
            current += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch in ",;" and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    out: list[tuple[str, str]] = []
    for part in parts:
        attr, sep, value = part.partition("=")
        if sep:
            out.append((attr.strip().lower(), " ".join(value.split()).lower()))
    return out


def _name_pairs(name: x509.Name) -> list[tuple[str, str]]:
    return _rdns(name.rfc4514_string())


def exchange_name_matches(expected: str, cert: x509.Certificate) -> tuple[bool, str] | None:
    """Exchange's TlsCertificateName `<I>issuer<S>subject`: does the certificate carry that
    issuer and subject? None when `expected` is not of that form. Exchange writes the names
    most specific first ("CN=..., O=..., C=US"), as RFC 4514 does; the reverse order is
    accepted too, since admins copy it from tools that print X.500 order."""
    match = _EXCHANGE_NAME.match(expected)
    if match is None:
        return None
    want_issuer = _rdns(match.group("issuer"))
    want_subject = _rdns(match.group("subject"))
    issuer = _name_pairs(cert.issuer)
    subject = _name_pairs(cert.subject)
    problems = []
    if want_issuer not in (issuer, issuer[::-1]):
        problems.append(f"issuer is {cert.issuer.rfc4514_string()}, not {match.group('issuer')}")
    if want_subject not in (subject, subject[::-1]):
        problems.append(f"subject is {cert.subject.rfc4514_string()}, not {match.group('subject')}")
    return not problems, "; ".join(problems)


# --------------------------------------------------------------------------- judging


async def check_cert_file(
    cf: CertFile,
    options: Options,
    *,
    receiver: ReceiverProfile | None = None,
    endpoints: bool = True,
) -> CertReport:
    """Judge a certificate file as a server that receives and sends with it."""
    from probes.net.dns import Resolver
    from probes.net.http import Fetcher
    from probes.net.trust import load_roots

    where = Where(cf.path)
    chain = tuple(cert_info(c) for c in cf.certs)
    report = CertReport(cf, chain, expect_name=options.expect_name, receiver=receiver)
    found: list[Finding] = []
    roots = load_roots(options)
    fetcher = Fetcher(Resolver(options.resolver, timeout=options.timeout), options, roots)
    leaf = cf.certs[0]
    exchange = exchange_name_matches(options.expect_name, leaf) if options.expect_name else None
    # An <I>..<S>.. name is matched here; validate_chain knows host names and wildcards only.
    chain_options = replace(options, expect_name=None) if exchange is not None else options
    try:
        async for event in validate_chain(
            where,
            list(chain),
            chain_options,
            names=[],
            fetcher=fetcher,
            roots=roots,
            leaf_role="the certificate",
            supplier="the file",
        ):
            if isinstance(event, ChainValidated):
                report.validation = event
            elif isinstance(event, FindingRaised):
                found.append(event.finding)
        if exchange is not None and not exchange[0]:
            found.append(
                raise_finding(
                    "cert.expected_name_mismatch",
                    where,
                    f"the certificate does not match TlsCertificateName {options.expect_name}: "
                    f"{exchange[1]}",
                    evidence=("cert:0",),
                )
            )
        info = chain[0]
        if info.eku and not {"clientAuth", "anyExtendedKeyUsage"} & set(info.eku):
            found.append(
                raise_finding(
                    "cert.not_client_auth",
                    where,
                    f"the certificate's extended key usage is {', '.join(info.eku)}, without "
                    "clientAuth: it can receive mail over TLS but not authenticate when sending",
                    evidence=("cert:0",),
                )
            )
        if cf.key is None:
            found.append(
                raise_finding(
                    "cert.no_key",
                    where,
                    f"{cf.path} holds no private key and no --key was given",
                )
            )
        else:
            report.key_matches = _spki(cf.key) == _spki(leaf)
            if not report.key_matches:
                found.append(
                    raise_finding(
                        "cert.key_mismatch",
                        where,
                        f"the private key ({_key_type(cf.key)}, from {cf.key_source}) is not the "
                        f"key of {info.subject} ({info.key_type} {info.key_bits})",
                        evidence=("cert:0",),
                    )
                )
        if endpoints and report.validation is not None:
            async for event in check_endpoints(
                list(report.validation.path), fetcher, options, where=where, cache={}
            ):
                if isinstance(event, EndpointChecked):
                    report.endpoints.append(event)
                elif isinstance(event, FindingRaised):
                    found.append(event.finding)
    finally:
        await fetcher.aclose()
    report.findings = grade_for(found, receiver)
    report.verdict = _cert_verdict(report)
    return report


def _cert_verdict(report: CertReport) -> str:
    if report.receiver is not None:
        return verdict(report.findings, report.receiver)
    errors = [f for f in sort_findings(report.findings) if f.severity == "error"]
    if not errors:
        return "The certificate file is ready to install."
    return f"Do not install this file as it is: {errors[0].id} ({errors[0].summary})."
