"""What the tests of our own side share: a small PKI that writes client certificate files,
and a sending server played by smtplib (tests/test_listener.py, tests/test_listen_screen.py)."""

from __future__ import annotations

import smtplib
import ssl
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from tests.support.pki import Issued, issue


class Pki:
    """A root, an issuing CA under it, and roots.pem trusting the root."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.root = issue("Contoso Test Root", ca=True)
        self.inter = issue("Contoso Test Issuing CA", self.root, ca=True)
        self.roots = tmp / "roots.pem"
        self.roots.write_bytes(self.root.pem)

    def client_files(self, leaf: Issued, *, intermediate: bool = True) -> tuple[str, str]:
        """(chain file, key file) for a client that presents leaf (and the intermediate)."""
        chain = self.tmp / f"chain-{id(leaf)}.pem"
        key = self.tmp / f"key-{id(leaf)}.pem"
        chain.write_bytes(leaf.pem + (self.inter.pem if intermediate else b""))
        key.write_bytes(
            leaf.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return str(chain), str(key)


def send(
    port: int,
    *,
    files: tuple[str, str] | None,
    tls: bool = True,
    ehlo: str = "mail.contoso.test",
) -> str:
    """Deliver one message the way an MTA does; returns the reply to the DATA."""
    with smtplib.SMTP("127.0.0.1", port, local_hostname=ehlo, timeout=10) as smtp:
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            if files is not None:
                ctx.load_cert_chain(*files)
            smtp.starttls(context=ctx)
            smtp.ehlo(ehlo)
        smtp.mail("postmaster@contoso.test")
        smtp.rcpt("someone@fabrikam.test")
        code, reply = smtp.data(b"Subject: test\r\n\r\nhello\r\n")
        return f"{code} {reply.decode()}"
