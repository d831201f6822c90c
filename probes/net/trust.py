"""The trust store in use: certifi (default), the system bundle, or exactly --ca-file.

One `Roots` serves both path validation (cryptography's verifier takes the certificates) and
HTTPS fetches (`ssl_context()`), so MTA-STS and the MX chain are judged against the same roots.
"""

from __future__ import annotations

import re
import ssl
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from probes.model.errors import CheckError
from probes.model.options import Options

# Where distributions keep the system bundle, most common first.
SYSTEM_BUNDLES: tuple[str, ...] = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine, Arch
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/ca-bundle.pem",  # openSUSE
    "/etc/ssl/cert.pem",  # macOS, BSDs
)

_PEM_BLOCK = re.compile(
    rb"-----BEGIN (?:TRUSTED )?CERTIFICATE-----\s.*?-----END (?:TRUSTED )?CERTIFICATE-----",
    re.S,
)


@dataclass
class Roots:
    """The trusted roots and a description a user recognises ("certifi", the file path)."""

    certs: list[x509.Certificate]
    description: str
    _context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    def pem(self) -> str:
        return "".join(c.public_bytes(Encoding.PEM).decode("ascii") for c in self.certs)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts exactly these roots (built once, then reused)."""
        if self._context is None:
            ctx = ssl.create_default_context(cadata=self.pem())
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            # Python 3.13 turns on X509_STRICT by default; MTA-STS senders (Postfix, Exchange
            # Online) validate like plain OpenSSL, so a policy host they accept must pass here
            # too, whatever Python runs mxlens.
            ctx.verify_flags &= ~getattr(ssl, "VERIFY_X509_STRICT", 0)
            self._context = ctx
        return self._context


def parse_pem_bundle(data: bytes) -> tuple[list[x509.Certificate], list[str]]:
    """All certificates in a PEM bundle, skipping blocks that do not parse.
    Returns (certificates, one-line errors of the skipped blocks)."""
    certs: list[x509.Certificate] = []
    errors: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for block in _PEM_BLOCK.findall(data):
            try:
                certs.append(x509.load_pem_x509_certificate(block))
            except ValueError as exc:
                errors.append(str(exc).splitlines()[0] if str(exc) else "bad PEM block")
    return certs, errors


def _load_file(path: str, what: str) -> list[x509.Certificate]:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CheckError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN" not in data:
        raise CheckError(f"cannot read {what} {path}: not a PEM file")
    certs, errors = parse_pem_bundle(data)
    if not certs:
        reason = errors[0] if errors else "no certificate in it"
        raise CheckError(f"cannot read {what} {path}: {reason}")
    return certs


# (description, path, mtime, size) -> Roots: an audit checks hundreds of domains with one
# trust store, and parsing the certifi bundle and building its SSL context cost milliseconds
# each time. A changed file (mtime or size) is read again.
_LOADED: dict[tuple[str, str, int, int], Roots] = {}


def _roots(path: str, what: str, description: str) -> Roots:
    try:
        st = Path(path).stat()
    except OSError:
        return Roots(_load_file(path, what), description)  # _load_file words the error
    key = (description, path, st.st_mtime_ns, st.st_size)
    found = _LOADED.get(key)
    if found is None:
        if len(_LOADED) > 16:
            _LOADED.clear()
        found = _LOADED[key] = Roots(_load_file(path, what), description)
    return found


def system_bundle() -> str | None:
    """Path of the operating system's CA bundle, or None when none is found."""
    candidates = list(SYSTEM_BUNDLES)
    default = ssl.get_default_verify_paths().cafile
    if default:
        candidates.insert(0, default)
    for path in candidates:
        if Path(path).is_file():
            return path
    return None


def load_roots(options: Options) -> Roots:
    """The roots the options ask for. Raises CheckError for an unusable --ca-file."""
    if options.ca_file:
        return _roots(options.ca_file, "--ca-file", options.ca_file)
    if options.trust == "system":
        path = system_bundle()
        if path is None:
            raise CheckError("no system trust store found (looked in /etc/ssl, /etc/pki)")
        return _roots(path, "system trust store", f"system ({path})")
    return _roots(certifi.where(), "the certifi bundle", "certifi")
