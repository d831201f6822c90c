"""Small real SMTP servers on 127.0.0.1 (threads with blocking sockets), scripted to misbehave
the way real ones do, and helpers that read the events of one SMTP session.

The `serve` and `cert_files` fixtures (tests/conftest.py) build on these.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from mxlens_lab.pki import PKI
from probes.model.events import Event, FindingRaised, SessionFinished, TranscriptLine, Where

# --------------------------------------------------------------------------- certificates


def write_cert_files(folder: Path) -> tuple[Path, Path]:
    """A test CA and a leaf for mx.test from the lab's PKI, written as a chain file (leaf +
    CA: 2 certificates, so tests see a chain the server sent) and a key file."""
    pki = PKI("http://127.0.0.1:9")  # no revocation URLs in the leaf: nobody fetches them
    ca = pki.root("mxlens-test-ca")
    leaf = pki.leaf(ca, ["mx.test"], ocsp=False, crl=False, aia=False)
    chain = folder / "chain.pem"
    chain.write_bytes(leaf.pem_chain() + ca.cert.public_bytes(serialization.Encoding.PEM))
    keyfile = folder / "key.pem"
    keyfile.write_bytes(leaf.key_pem())
    return chain, keyfile


def server_context(
    files: tuple[Path, Path],
    *,
    minimum: ssl.TLSVersion | None = None,
    maximum: ssl.TLSVersion | None = None,
    legacy: bool = False,
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(files[0]), str(files[1]))
    if legacy:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1 on purpose
        if minimum is not None:
            ctx.minimum_version = minimum
        if maximum is not None:
            ctx.maximum_version = maximum
    return ctx


# --------------------------------------------------------------------------- fake server


class Peer:
    """One accepted connection, seen from the server side."""

    def __init__(self, sock: socket.socket, server: FakeSmtp) -> None:
        self.sock: socket.socket = sock
        self.server = server
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def readline(self) -> bytes | None:
        while b"\n" not in self.buf:
            if len(self.buf) > 65536:
                return None
            try:
                chunk = self.sock.recv(4096)
            except (OSError, ValueError):
                return None
            if not chunk:
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        self.server.commands.append(line.rstrip(b"\r"))
        return line + b"\n"

    def starttls(self, ctx: ssl.SSLContext, *, keep_buffer: bool = False) -> None:
        # keep_buffer=True is the CVE-2011-0411 bug: clear-text input read before the
        # upgrade is processed as if it had arrived inside TLS.
        if not keep_buffer:
            self.buf = b""
        self.sock = ctx.wrap_socket(self.sock, server_side=True)
        with self.server.lock:
            self.server.socks.append(self.sock)


class FakeSmtp:
    """A scripted server on 127.0.0.1 (or ::1): `handler(peer)` runs for each connection in
    its own thread. Counts connections and the most that were open at once."""

    def __init__(self, handler: Callable[[Peer], None], host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(16)
        self.listener.settimeout(0.05)
        self.host = host
        self.port: int = self.listener.getsockname()[1]
        self.handler = handler
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.socks: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.commands: list[bytes] = []
        self.errors: list[BaseException] = []
        self.connections = 0
        self.open_now = 0
        self.max_open = 0
        self.accepter = threading.Thread(target=self._accept, daemon=True)
        self.accepter.start()

    def where(self) -> Where:
        return Where("mx.test", self.host, self.port)

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(5.0)
            with self.lock:
                self.socks.append(sock)
                self.connections += 1
            thread = threading.Thread(target=self._run, args=(sock,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _run(self, sock: socket.socket) -> None:
        with self.lock:
            self.open_now += 1
            self.max_open = max(self.max_open, self.open_now)
        peer = Peer(sock, self)
        try:
            self.handler(peer)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.errors.append(exc)
        finally:
            with self.lock:
                self.open_now -= 1
            try:
                peer.sock.close()
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        with self.lock:
            socks = list(self.socks)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass
        self.accepter.join(5)
        for thread in self.threads:
            thread.join(5)
        self.listener.close()


EHLO_OK = (
    b"250-mx.test Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-STARTTLS\r\n250 8BITMIME\r\n"
)
EHLO_TLS = b"250-mx.test Hello\r\n250-PIPELINING\r\n250 8BITMIME\r\n"


def smtp_script(
    *,
    tls_ctx: ssl.SSLContext | None = None,
    greeting: bytes = b"220 mx.test ESMTP test\r\n",
    ehlo: bytes = EHLO_OK,
    ehlo_tls: bytes = EHLO_TLS,
    starttls_reply: bytes = b"220 2.0.0 Ready to start TLS\r\n",
    keep_buffer: bool = False,
    implicit: bool = False,
) -> Callable[[Peer], None]:
    """A plain SMTP server that does what a healthy one does, with the given replies."""

    def handler(peer: Peer) -> None:
        in_tls = False
        if implicit:
            assert tls_ctx is not None
            peer.starttls(tls_ctx)
            in_tls = True
        peer.send(greeting)
        while True:
            line = peer.readline()
            if line is None:
                return
            command = line.strip().upper()
            if command.startswith(b"EHLO"):
                peer.send(ehlo_tls if in_tls else ehlo)
            elif command == b"STARTTLS" and not in_tls:
                peer.send(starttls_reply)
                if starttls_reply.startswith(b"220"):
                    if tls_ctx is None:
                        return  # 220 and then nothing: a broken TLS front end
                    peer.starttls(tls_ctx, keep_buffer=keep_buffer)
                    in_tls = True
            elif command == b"NOOP":
                peer.send(b"250 2.0.0 OK\r\n")
            elif command == b"QUIT":
                peer.send(b"221 2.0.0 Bye\r\n")
                return
            else:
                peer.send(b"502 5.5.2 Error: command not recognized\r\n")

    return handler


def raw_script(
    *chunks: bytes, then_wait: float = 0.0, endless: bytes | None = None
) -> Callable[[Peer], None]:
    """Send fixed bytes (and optionally repeat `endless` until the client goes away)."""

    def handler(peer: Peer) -> None:
        for chunk in chunks:
            peer.send(chunk)
        if endless is not None:
            deadline = time.monotonic() + 10
            while not peer.server.stop.is_set() and time.monotonic() < deadline:
                peer.send(endless)
        end = time.monotonic() + then_wait
        while time.monotonic() < end and not peer.server.stop.is_set():
            time.sleep(0.02)

    return handler


# --------------------------------------------------------------------------- events of one session


def transcript(events: list[Event]) -> list[TranscriptLine]:
    return [e for e in events if isinstance(e, TranscriptLine)]


def findings(events: list[Event]) -> dict[str, FindingRaised]:
    return {e.finding.id: e for e in events if isinstance(e, FindingRaised)}


def finished(events: list[Event]) -> SessionFinished:
    last = events[-1]
    assert isinstance(last, SessionFinished), last
    return last


def evidence_line(events: list[Event], fid: str) -> TranscriptLine:
    ref = findings(events)[fid].finding.evidence[0]
    assert ref.kind == "transcript" and ref.index is not None
    line = transcript(events)[ref.index]
    assert line.index == ref.index  # the engine's numbering is the one evidence uses
    return line
