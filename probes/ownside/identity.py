"""The server side of `mxlens listen`'s TLS: the pyOpenSSL context and the certificate we present.

Why pyOpenSSL and not the ssl module: `ssl` can ask for a client certificate only with
CERT_OPTIONAL, and then fails the handshake on any certificate it cannot verify, which is the
very case to diagnose; it has no verify callback. pyOpenSSL's `Context.set_verify` takes one,
so the handshake completes whatever the sender presents and the chain is judged afterwards.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from probes.checks.certificates import cert_info
from probes.model.errors import CheckError
from probes.model.events import CertInfo

if TYPE_CHECKING:
    from probes.ownside.listener import ListenOptions


def _throwaway_identity(hostname: str) -> tuple[x509.Certificate, Any]:
    """A self-signed certificate for hostname: senders that deliver to a test receiver use
    `encrypt`-style TLS (no check of ours), and the subject of the test is *their* side."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _load_identity(cert_file: str, key_file: str) -> tuple[list[x509.Certificate], Any]:
    from probes.net.trust import parse_pem_bundle

    try:
        cert_data = Path(cert_file).read_bytes()
        key_data = Path(key_file).read_bytes()
    except OSError as exc:
        raise CheckError(f"cannot read {exc.filename}: {exc.strerror}") from None
    certs, _ = parse_pem_bundle(cert_data)
    if not certs:
        raise CheckError(f"cannot read --cert {cert_file}: no PEM certificate in it")
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except (ValueError, TypeError) as exc:
        raise CheckError(f"cannot read --key {key_file}: {str(exc).splitlines()[0]}") from None
    return certs, key


def build_context(opts: ListenOptions) -> tuple[Any, CertInfo]:
    """The pyOpenSSL server context and the certificate it presents."""
    from OpenSSL import SSL

    if opts.cert_file and opts.key_file:
        certs, key = _load_identity(opts.cert_file, opts.key_file)
    elif opts.cert_file or opts.key_file:
        raise CheckError("--cert and --key go together: give both or neither")
    else:
        leaf, key = _throwaway_identity(opts.hostname)
        certs = [leaf]
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    # Accept what the sender offers, legacy versions included, so the offer can be judged
    # rather than refused at the door.
    ctx.set_min_proto_version(SSL.TLS1_VERSION)
    with contextlib.suppress(SSL.Error):
        ctx.set_cipher_list(b"ALL:@SECLEVEL=0")
    try:
        ctx.use_certificate(certs[0])
        for extra in certs[1:]:
            ctx.add_extra_chain_cert(extra)
        ctx.use_privatekey(key)
        ctx.check_privatekey()
    except SSL.Error as exc:
        raise CheckError(f"cannot use --cert/--key: {exc}") from None

    def accept_any(conn: Any, cert: Any, errno: int, depth: int, ok: int) -> bool:
        return True  # ask, never refuse: the chain is judged after the handshake

    ctx.set_verify(SSL.VERIFY_PEER, accept_any)
    # Session IDs need a context id once client certificates are requested.
    ctx.set_session_id(b"mxlens-listen")
    return ctx, cert_info(certs[0])
