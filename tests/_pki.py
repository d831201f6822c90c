"""A small private PKI and a real loopback HTTP server for certificate and endpoint tests.

Shared by tests/test_certificates.py and tests/test_endpoints.py (owned by the same helper).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from probes.checks.certificates import parse_certificate
from probes.model.events import CertInfo

NOW = datetime.now(timezone.utc).replace(microsecond=0)
DAY = timedelta(days=1)


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


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
    san is given; san=() means no SAN extension at all."""
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
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
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
    cert = builder.sign(signer_key, hash_alg or hashes.SHA256())
    return Issued(cert, key)


def rsa_key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/octet-stream"
    handler: Callable[[bytes], tuple[int, str, bytes]] | None = None


@dataclass
class Server:
    """A real HTTP server on 127.0.0.1 serving routes by path; counts hits per path."""

    routes: dict[str, Route] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextmanager
def http_server() -> Iterator[Server]:
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self, body: bytes) -> None:
            state.hits[self.path] = state.hits.get(self.path, 0) + 1
            route = state.routes.get(self.path)
            if route is None:
                status, ctype, data = 404, "text/plain", b"not found"
            elif route.handler is not None:
                status, ctype, data = route.handler(body)
            else:
                status, ctype, data = route.status, route.content_type, route.body
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            self._serve(b"")

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", "0"))
            self._serve(self.rfile.read(length))

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port() -> int:
    """A loopback TCP port where nothing listens (bound then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(body)) + body


_SHA256_RSA = bytes.fromhex("06092a864886f70d01010b")
_SHA1_RSA = bytes.fromhex("06092a864886f70d010105")


def resign_sha1(issued: Issued, signer_key: rsa.RSAPrivateKey) -> Issued:
    """Re-sign an RSA-SHA256-signed certificate with SHA-1. cryptography refuses to create
    SHA-1 certificates, so swap the algorithm OID (same length) and sign the TBS by hand."""
    from cryptography.hazmat.primitives.asymmetric import padding

    tbs = issued.cert.tbs_certificate_bytes
    assert tbs.count(_SHA256_RSA) == 1, "issue() the certificate with an RSA signer and SHA-256"
    tbs = tbs.replace(_SHA256_RSA, _SHA1_RSA)
    signature = signer_key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    algid = _tlv(0x30, _SHA1_RSA + b"\x05\x00")
    der = _tlv(0x30, tbs + algid + _tlv(0x03, b"\x00" + signature))
    return Issued(x509.load_der_x509_certificate(der), issued.key)
