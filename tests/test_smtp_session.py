"""smtp_session against small real SMTP servers on 127.0.0.1 (threads with blocking sockets).

The servers here are scripted to misbehave the way real ones do: no STARTTLS, 454, silence,
endless lines, hostile banners. `FakeSmtp`, `smtp_script` and the certificate fixtures are
also used by test_tls_probe.py.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from probes.checks.session import smtp_session
from probes.model.events import (
    ChainReceived,
    Event,
    FindingRaised,
    SessionFinished,
    SessionStarted,
    TlsNegotiated,
    TranscriptLine,
    Waiting,
    Where,
)
from probes.model.options import Options

# --------------------------------------------------------------------------- certificates


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@pytest.fixture(scope="session")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A test CA and a leaf for mx.test; the chain file holds leaf + CA (2 certificates)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("mxlens test CA"))
        .issuer_name(_name("mxlens test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("mx.test"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("mx.test")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("certs")
    chain = folder / "chain.pem"
    chain.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    )
    keyfile = folder / "key.pem"
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
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


@pytest.fixture
def serve() -> Iterator[Callable[..., FakeSmtp]]:
    servers: list[FakeSmtp] = []

    def start(handler: Callable[[Peer], None], host: str = "127.0.0.1") -> FakeSmtp:
        server = FakeSmtp(handler, host)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


OPTIONS = Options(timeout=1.0)


async def collect(gen: object) -> list[Event]:
    return [event async for event in gen]  # type: ignore[attr-defined]


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


async def run(server: FakeSmtp, options: Options = OPTIONS) -> list[Event]:
    return await collect(smtp_session(server.where(), options, ehlo_name="client.test"))


# --------------------------------------------------------------------------- tests


async def test_healthy_starttls(
    serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]
) -> None:
    server = serve(smtp_script(tls_ctx=server_context(cert_files)))
    events = await run(server)

    assert isinstance(events[0], SessionStarted) and events[0].purpose == "main"
    end = finished(events)
    assert end.outcome == "ok" and end.starttls is True
    assert findings(events) == {}

    tls = next(e for e in events if isinstance(e, TlsNegotiated))
    assert tls.version == "TLSv1.3"
    assert tls.cipher.startswith("TLS_")
    assert tls.forward_secrecy is True
    assert tls.group in {"x25519", "secp256r1", "X25519MLKEM768", "x448", "secp384r1"}
    assert tls.sni == "mx.test"
    assert "<- ServerHello" in tls.handshake and "<- Certificate" in tls.handshake

    chain = next(e for e in events if isinstance(e, ChainReceived))
    assert len(chain.certs) == 2  # the intermediate as sent, not just the leaf
    assert "mx.test" in chain.certs[0].subject
    assert "mxlens test CA" in chain.certs[1].subject

    lines = transcript(events)
    dirs = [line.dir for line in lines]
    texts = [line.text for line in lines]
    assert dirs[:2] == ["S", "C"] and texts[0] == "220 mx.test ESMTP test"
    assert texts[1] == "EHLO client.test"
    starttls_at = texts.index("STARTTLS")
    assert texts[starttls_at + 1].startswith("220 2.0.0")
    assert texts[starttls_at + 2] == "-> ClientHello"
    done = next(i for i, t in enumerate(texts) if t.startswith("handshake done: "))
    assert dirs[starttls_at + 2 : done + 1] == ["TLS"] * (done - starttls_at - 1)
    assert texts[done] == f"handshake done: TLSv1.3 {tls.cipher} {tls.group}"
    assert texts[done + 1] == "EHLO client.test" and dirs[done + 1] == "C"
    assert "QUIT" in texts and texts[-1].startswith("221")
    times = [line.t_ms for line in lines]
    assert times == sorted(times)
    # Never a message: no MAIL, RCPT or DATA reached the server.
    sent = [c.split(b" ")[0].upper() for c in server.commands]
    assert sent == [b"EHLO", b"STARTTLS", b"EHLO", b"QUIT"]
    assert [line.index for line in lines] == list(range(len(lines)))
    # The reader says what it waits for, in order (the UI shows it while a server is silent).
    waits = [e.what for e in events if isinstance(e, Waiting)]
    assert waits[:5] == [
        "TCP connection",
        "greeting",
        "EHLO reply",
        "STARTTLS reply",
        "TLS handshake",
    ]


async def test_no_starttls(serve: Callable[..., FakeSmtp]) -> None:
    server = serve(smtp_script(ehlo=b"250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"))
    events = await run(server)
    assert set(findings(events)) == {"tls.starttls_not_offered"}
    assert evidence_line(events, "tls.starttls_not_offered").text == "250-mx.test"
    end = finished(events)
    assert end.outcome == "starttls" and end.starttls is False
    assert not any(isinstance(e, TlsNegotiated) for e in events)
    assert server.commands[-1] == b"QUIT"


async def test_starttls_refused(serve: Callable[..., FakeSmtp]) -> None:
    server = serve(
        smtp_script(starttls_reply=b"454 4.7.0 TLS not available due to local problem\r\n")
    )
    events = await run(server)
    assert set(findings(events)) == {"tls.starttls_refused"}
    assert evidence_line(events, "tls.starttls_refused").text.startswith("454 4.7.0")
    assert "454" in findings(events)["tls.starttls_refused"].finding.summary
    assert finished(events).outcome == "starttls"


async def test_starttls_421_is_rate_limit(serve: Callable[..., FakeSmtp]) -> None:
    server = serve(smtp_script(starttls_reply=b"421 4.7.0 Too many TLS sessions\r\n"))
    events = await run(server)
    assert set(findings(events)) == {"smtp.rate_limited"}
    assert finished(events).throttled  # the session says so itself: no TLS verdict


async def test_never_greets_times_out(serve: Callable[..., FakeSmtp]) -> None:
    server = serve(raw_script(then_wait=5.0))
    start = time.monotonic()
    events = await run(server)
    elapsed = time.monotonic() - start
    assert elapsed < OPTIONS.timeout + 5  # the step timeout fired, nothing waited longer
    assert set(findings(events)) == {"smtp.timeout"}
    line = evidence_line(events, "smtp.timeout")
    assert line.dir == "!" and line.text == "timeout waiting for the greeting after 1.0 s"
    assert finished(events).outcome == "greeting"


async def test_endless_line_stops(serve: Callable[..., FakeSmtp]) -> None:
    server = serve(raw_script(b"220 ", endless=b"x" * 8192))
    start = time.monotonic()
    events = await run(server, Options(timeout=20.0))
    # Stopped by the size cap, long before the 20 s step timeout.
    assert time.monotonic() - start < 10.0
    # The syntax warning, and the error: the greeting never completes, so no sender gets on.
    assert set(findings(events)) == {"smtp.malformed_reply", "smtp.timeout"}
    assert finished(events).outcome == "greeting"
    assert "longer than" in evidence_line(events, "smtp.malformed_reply").text


async def test_endless_continuation_lines_stop(serve: Callable[..., FakeSmtp]) -> None:
    server = serve(raw_script(endless=b"220-still greeting you\r\n" * 50))
    # The 100-line cap ends the reply, not the 5 s timeout: the evidence line says so.
    events = await run(server, Options(timeout=5.0))
    assert set(findings(events)) == {"smtp.malformed_reply", "smtp.timeout"}
    lines = transcript(events)
    assert sum(1 for line in lines if line.dir == "S") == 100
    assert "100 lines" in evidence_line(events, "smtp.malformed_reply").text


async def test_hostile_banner_kept_verbatim(
    serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]
) -> None:
    banner = b"220 mx.test \x1b[31mRED\x1b[0m \x1b]0;pwned\x07 [bold]x[/bold] \xff\xfe\xc3 end\r\n"
    server = serve(smtp_script(tls_ctx=server_context(cert_files), greeting=banner))
    events = await run(server)
    first = transcript(events)[0]
    assert first.dir == "S"
    assert (
        first.text
        == "220 mx.test \x1b[31mRED\x1b[0m \x1b]0;pwned\x07 [bold]x[/bold] \ufffd\ufffd\ufffd end"
    )
    assert finished(events).outcome == "ok"


async def test_greeting_554_rejected_and_421_rate_limited(serve: Callable[..., FakeSmtp]) -> None:
    rejected = serve(raw_script(b"554 5.7.1 No SMTP service here\r\n", then_wait=2))
    events = await run(rejected)
    assert set(findings(events)) == {"smtp.greeting_rejected"}
    assert finished(events).outcome == "greeting"
    assert not finished(events).throttled  # a refusal, not a throttle
    assert evidence_line(events, "smtp.greeting_rejected").text.startswith("554")

    throttled = serve(raw_script(b"421 4.7.0 mx.test Too many connections, try later\r\n"))
    events = await run(throttled)
    assert set(findings(events)) == {"smtp.rate_limited"}

    busy = serve(raw_script(b"554 5.7.1 rate limit exceeded for your network\r\n"))
    events = await run(busy)
    assert set(findings(events)) == {"smtp.rate_limited"}


async def test_ehlo_rejected(serve: Callable[..., FakeSmtp]) -> None:
    server = serve(smtp_script(ehlo=b"550 5.7.1 go away\r\n"))
    events = await run(server)
    assert set(findings(events)) == {"smtp.ehlo_rejected"}
    assert finished(events).outcome == "ehlo"


async def test_connect_refused() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    events = await collect(
        smtp_session(Where("mx.test", "127.0.0.1", port), OPTIONS, ehlo_name="client.test")
    )
    assert set(findings(events)) == {"smtp.connect_refused"}
    assert evidence_line(events, "smtp.connect_refused").dir == "!"
    assert finished(events).outcome == "connect"


async def test_closed_mid_dialogue(serve: Callable[..., FakeSmtp]) -> None:
    server = serve(raw_script(b"220 mx.test ESMTP\r\n"))  # greets, then hangs up
    events = await run(server)
    assert set(findings(events)) == {"smtp.timeout"}
    text = evidence_line(events, "smtp.timeout").text
    assert "closed by server" in text or "reset by server" in text  # a race on loopback
    assert finished(events).outcome == "ehlo"


async def test_malformed_reply_continues(
    serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]
) -> None:
    ehlo = b"250-mx.test\r\n251-MIXED\r\n250-" + b"Y" * 600 + b"\r\n250 STARTTLS\r\n"
    server = serve(smtp_script(tls_ctx=server_context(cert_files), ehlo=ehlo))
    events = await run(server)
    assert set(findings(events)) == {"smtp.malformed_reply"}
    summary = findings(events)["smtp.malformed_reply"].finding.summary
    assert "mixed codes" in summary
    assert finished(events).outcome == "ok"
    long_line = next(line for line in transcript(events) if line.text.startswith("250-YYY"))
    assert len(long_line.text) == 510


async def test_starttls_still_offered(
    serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]
) -> None:
    server = serve(smtp_script(tls_ctx=server_context(cert_files), ehlo_tls=EHLO_OK))
    events = await run(server)
    assert set(findings(events)) == {"tls.starttls_still_offered"}
    assert evidence_line(events, "tls.starttls_still_offered").text == "250-STARTTLS"
    assert finished(events).outcome == "ok"


async def test_starttls_still_offered_points_at_its_own_line(
    serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]
) -> None:
    # An empty continuation line ("250-") and bare-LF line ends before the keyword: the
    # evidence must still be the line that lists STARTTLS (lower case is the same keyword).
    ehlo_tls = b"250-mx.test Hello\n250-\n250-PIPELINING\n250-starttls\n250 8BITMIME\n"
    server = serve(smtp_script(tls_ctx=server_context(cert_files), ehlo_tls=ehlo_tls))
    events = await run(server)
    assert set(findings(events)) == {"tls.starttls_still_offered"}
    assert evidence_line(events, "tls.starttls_still_offered").text == "250-starttls"


async def test_handshake_failure_hang_up(serve: Callable[..., FakeSmtp]) -> None:
    server = serve(smtp_script(tls_ctx=None))  # says 220 to STARTTLS, then hangs up
    start = time.monotonic()
    events = await run(server, Options(timeout=20.0))
    assert time.monotonic() - start < 10.0  # seen at once, not after the step timeout
    assert set(findings(events)) == {"tls.handshake_failed"}
    line = evidence_line(events, "tls.handshake_failed")
    assert line.dir == "!" and line.text.startswith("handshake failed: ")
    assert "closed" in line.text or "reset" in line.text  # which one is a race
    assert finished(events).outcome == "handshake"


def _garbage_after_220(peer: Peer) -> None:
    peer.send(b"220 mx.test ESMTP\r\n")
    peer.readline()
    peer.send(EHLO_OK)
    peer.readline()
    peer.send(b"220 go ahead\r\n")
    peer.readline()  # the ClientHello (binary, but it has a newline somewhere or times out)
    peer.send(b"500 5.5.1 what is this?\r\n" * 4)
    time.sleep(0.5)


async def test_handshake_failure_plaintext_answer(serve: Callable[..., FakeSmtp]) -> None:
    server = serve(_garbage_after_220)
    events = await run(server, Options(timeout=3.0))
    assert set(findings(events)) == {"tls.handshake_failed"}
    texts = [line.text for line in transcript(events)]
    assert "-> ClientHello" in texts
    summary = findings(events)["tls.handshake_failed"].finding.summary
    assert "WRONG_VERSION_NUMBER" in summary or "RECORD" in summary.upper()
    assert finished(events).outcome == "handshake"


async def test_tls12_server(serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]) -> None:
    ctx = server_context(cert_files, maximum=ssl.TLSVersion.TLSv1_2)
    server = serve(smtp_script(tls_ctx=ctx))
    events = await run(server)
    tls = next(e for e in events if isinstance(e, TlsNegotiated))
    assert tls.version == "TLSv1.2"
    assert "ECDHE" in tls.cipher and tls.forward_secrecy
    assert "<- ServerKeyExchange" in tls.handshake
    assert tls.group in {"x25519", "secp256r1"}  # read from the ServerKeyExchange
    assert findings(events) == {}


async def test_legacy_only_server(
    serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]
) -> None:
    ctx = server_context(
        cert_files, minimum=ssl.TLSVersion.TLSv1, maximum=ssl.TLSVersion.TLSv1, legacy=True
    )
    server = serve(smtp_script(tls_ctx=ctx))
    events = await run(server)
    tls = [e for e in events if isinstance(e, TlsNegotiated)]
    if not tls:
        pytest.skip("this OpenSSL refuses TLSv1 handshakes")
    assert tls[0].version == "TLSv1"
    assert "tls.legacy_only" in findings(events)


async def test_ipv6(serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]) -> None:
    try:
        server = serve(smtp_script(tls_ctx=server_context(cert_files)), host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    events = await run(server)
    assert finished(events).outcome == "ok"
    assert any(isinstance(e, TlsNegotiated) for e in events)


async def test_implicit_tls(serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]) -> None:
    server = serve(smtp_script(tls_ctx=server_context(cert_files), implicit=True))
    events = await run(server, Options(timeout=1.0, implicit_tls=True, port=465))
    end = finished(events)
    assert end.outcome == "ok" and end.starttls is None
    texts = [line.text for line in transcript(events)]
    assert texts[0] == "-> ClientHello"  # TLS from the first byte
    assert "STARTTLS" not in texts
    assert findings(events) == {}
