"""The lab SMTP server's knobs, over real loopback sockets.

The clients here are plain blocking sockets (and `ssl`) run in a worker thread, so they do not
share the event loop the server runs on; that is also how an outside MTA would see it.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator

import pytest

from mxlens_lab.pki import PKI
from mxlens_lab.smtp_server import Behaviour, SmtpServer

pytestmark = [
    pytest.mark.lab,
    pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning"),
]

HOST = "127.0.0.1"


class Client:
    """A minimal blocking SMTP client that keeps every byte it received."""

    def __init__(self, port: int, timeout: float = 3.0, host: str = HOST) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            (host, port), timeout=timeout
        )
        self.buf = b""
        self.received = b""

    def read_line(self) -> bytes:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
            self.received += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r")

    def read_reply(self) -> list[bytes]:
        lines = [self.read_line()]
        while len(lines[-1]) > 3 and lines[-1][3:4] == b"-":
            lines.append(self.read_line())
        return lines

    def send(self, text: str | bytes) -> None:
        data = text.encode() if isinstance(text, str) else text
        self.sock.sendall(data)

    def cmd(self, text: str) -> list[bytes]:
        self.send(text + "\r\n")
        return self.read_reply()

    def starttls(
        self, ctx: ssl.SSLContext | None = None, server_hostname: str = "mx.lab.test"
    ) -> None:
        if ctx is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        assert isinstance(self.sock, socket.socket)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)

    def close(self) -> None:
        self.sock.close()


def no_verify(**kw: object) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


async def serve(behaviour: Behaviour) -> SmtpServer:
    server = SmtpServer(HOST, 0, behaviour)
    await server.start()
    return server


@pytest.fixture
async def servers() -> AsyncIterator[list[SmtpServer]]:
    started: list[SmtpServer] = []
    yield started
    for s in started:
        await s.stop()


async def start(servers: list[SmtpServer], **kw: object) -> SmtpServer:
    server = await serve(Behaviour(**kw))  # type: ignore[arg-type]
    servers.append(server)
    return server


def ehlo_keywords(reply: list[bytes]) -> list[str]:
    return [ln[4:].decode().split(" ")[0].upper() for ln in reply[1:]]


# ------------------------------------------------------------------------------ greeting


async def test_default_greeting_and_ehlo(servers: list[SmtpServer]) -> None:
    server = await start(servers, hostname="mx1.healthy.lab.test")

    def talk() -> tuple[list[bytes], list[bytes], list[bytes]]:
        c = Client(server.port)
        try:
            return c.read_reply(), c.cmd("EHLO client.example"), c.cmd("QUIT")
        finally:
            c.close()

    greeting, ehlo, quit_ = await asyncio.to_thread(talk)
    assert greeting == [b"220 mx1.healthy.lab.test ESMTP mxlens-lab"]
    assert ehlo[0].startswith(b"250-mx1.healthy.lab.test")
    assert ehlo[-1][:4] == b"250 "
    assert "STARTTLS" in ehlo_keywords(ehlo)
    assert quit_[0].startswith(b"221")
    assert server.log.verbs() == ["EHLO", "QUIT"]


async def test_hostile_banner_is_sent_byte_for_byte(servers: list[SmtpServer]) -> None:
    banner = b"220 [bold]mx[/bold] \x1b[31mred\x1b[0m \x1b]0;pwned\x07 \xff\xfe ESMTP"
    server = await start(servers, banner=banner)

    def talk() -> tuple[list[bytes], list[bytes]]:
        c = Client(server.port)
        try:
            return c.read_reply(), c.cmd("EHLO client.example")
        finally:
            c.close()

    greeting, ehlo = await asyncio.to_thread(talk)
    assert greeting == [banner]
    # After the hostile banner the server behaves normally.
    assert "STARTTLS" in ehlo_keywords(ehlo)


async def test_rate_limited_greeting_hangs_up(servers: list[SmtpServer]) -> None:
    server = await start(
        servers, greeting_code=421, greeting_text="4.7.0 mx Too many connections, try later"
    )

    def talk() -> tuple[list[bytes], bytes]:
        c = Client(server.port)
        try:
            reply = c.read_reply()
            rest = c.sock.recv(100)  # the server closed: EOF
            return reply, rest
        finally:
            c.close()

    reply, rest = await asyncio.to_thread(talk)
    assert reply == [b"421 4.7.0 mx Too many connections, try later"]
    assert rest == b""


async def test_554_greeting_refuses_commands(servers: list[SmtpServer]) -> None:
    server = await start(servers, greeting_code=554, greeting_text="5.3.2 No SMTP service here")

    def talk() -> tuple[list[bytes], list[bytes]]:
        c = Client(server.port)
        try:
            return c.read_reply(), c.cmd("EHLO client.example")
        finally:
            c.close()

    greeting, ehlo = await asyncio.to_thread(talk)
    assert greeting[0].startswith(b"554 ")
    assert ehlo[0].startswith(b"503 ")


async def test_silent_server_says_nothing(servers: list[SmtpServer]) -> None:
    server = await start(servers, silent=True)

    def talk() -> str:
        c = Client(server.port, timeout=0.5)
        try:
            c.sock.recv(100)
            return "spoke"
        except TimeoutError:
            return "timeout"
        finally:
            c.close()

    assert await asyncio.to_thread(talk) == "timeout"
    assert server.log.connections == 1


async def test_endless_drip_never_ends_the_line_and_stops_at_the_limit(
    servers: list[SmtpServer],
) -> None:
    server = await start(servers, endless="drip", drip_interval=0.02, endless_limit=1.0)

    def talk() -> tuple[bytes, bytes]:
        c = Client(server.port, timeout=0.4)
        try:
            first = b""
            t0 = time.monotonic()
            while time.monotonic() - t0 < 0.4:
                try:
                    first += c.sock.recv(100)
                except TimeoutError:
                    break
            c.sock.settimeout(5)
            rest = b""
            while True:
                chunk = c.sock.recv(100)
                if not chunk:
                    break
                rest += chunk
            return first, rest
        finally:
            c.close()

    first, rest = await asyncio.to_thread(talk)
    assert first.startswith(b"220 ")
    assert 3 <= len(first) < 100  # dripping, not dumping
    assert b"\n" not in first + rest  # the line never ended, and the server gave up (EOF)


async def test_endless_continuation_lines_at_ehlo_stop_at_the_limit(
    servers: list[SmtpServer],
) -> None:
    server = await start(servers, endless="lines", endless_at="ehlo", endless_limit=0.5)

    def talk() -> list[bytes]:
        c = Client(server.port)
        try:
            c.read_reply()
            c.send("EHLO client.example\r\n")
            lines = []
            while True:
                try:
                    lines.append(c.read_line())
                except EOFError:
                    return lines
        finally:
            c.close()

    lines = await asyncio.to_thread(talk)
    assert len(lines) > 10
    assert all(ln.startswith(b"250-") for ln in lines)  # never a final "250 " line


async def test_client_leaving_stops_endless_reply(servers: list[SmtpServer]) -> None:
    server = await start(servers, endless="lines", endless_limit=30)

    def talk() -> None:
        c = Client(server.port)
        c.read_line()
        c.close()

    await asyncio.to_thread(talk)
    for _ in range(100):
        if server.log.active == 0:
            break
        await asyncio.sleep(0.05)
    assert server.log.active == 0


# ------------------------------------------------------------------------------ commands


async def test_mail_transactions_are_refused_and_logged(servers: list[SmtpServer]) -> None:
    server = await start(servers)

    def talk() -> list[list[bytes]]:
        c = Client(server.port)
        try:
            c.read_reply()
            c.cmd("EHLO client.example")
            return [c.cmd("MAIL FROM:<a@b.example>"), c.cmd("RCPT TO:<c@d.example>"), c.cmd("DATA")]
        finally:
            c.close()

    replies = await asyncio.to_thread(talk)
    assert all(r[0].startswith(b"502 ") for r in replies)
    assert [c.line.split(" ")[0] for c in server.log.forbidden] == ["MAIL", "RCPT", "DATA"]


async def test_noop_rset_and_unknown(servers: list[SmtpServer]) -> None:
    server = await start(servers)

    def talk() -> list[list[bytes]]:
        c = Client(server.port)
        try:
            c.read_reply()
            return [c.cmd("NOOP"), c.cmd("RSET"), c.cmd("VRFY root")]
        finally:
            c.close()

    noop, rset, vrfy = await asyncio.to_thread(talk)
    assert noop[0].startswith(b"250") and rset[0].startswith(b"250")
    assert vrfy[0].startswith(b"500")
    assert server.log.forbidden == []


async def test_ehlo_and_helo_rejected(servers: list[SmtpServer]) -> None:
    server = await start(servers, ehlo_code=550)

    def talk() -> tuple[list[bytes], list[bytes]]:
        c = Client(server.port)
        try:
            c.read_reply()
            return c.cmd("EHLO client.example"), c.cmd("HELO client.example")
        finally:
            c.close()

    ehlo, helo = await asyncio.to_thread(talk)
    assert ehlo[0].startswith(b"550 ") and helo[0].startswith(b"550 ")


async def test_malformed_ehlo_reply(servers: list[SmtpServer]) -> None:
    server = await start(servers, malformed=True)

    def talk() -> list[bytes]:
        c = Client(server.port)
        try:
            c.read_reply()
            return c.cmd("EHLO client.example")
        finally:
            c.close()

    reply = await asyncio.to_thread(talk)
    codes = {ln[:3] for ln in reply}
    assert codes == {b"250", b"251"}  # mixed codes
    assert max(len(ln) for ln in reply) > 512  # an over-long line
    assert "STARTTLS" in ehlo_keywords(reply)


# ------------------------------------------------------------------------------ STARTTLS


async def test_starttls_not_offered(servers: list[SmtpServer]) -> None:
    server = await start(servers, offer_starttls=False)

    def talk() -> tuple[list[bytes], list[bytes]]:
        c = Client(server.port)
        try:
            c.read_reply()
            return c.cmd("EHLO client.example"), c.cmd("STARTTLS")
        finally:
            c.close()

    ehlo, starttls = await asyncio.to_thread(talk)
    assert "STARTTLS" not in ehlo_keywords(ehlo)
    assert starttls[0].startswith(b"502")


async def test_starttls_refused(servers: list[SmtpServer]) -> None:
    server = await start(servers, starttls_reply="454 4.7.0 TLS not available due to local problem")

    def talk() -> tuple[list[bytes], list[bytes]]:
        c = Client(server.port)
        try:
            c.read_reply()
            ehlo = c.cmd("EHLO client.example")
            return ehlo, c.cmd("STARTTLS")
        finally:
            c.close()

    ehlo, starttls = await asyncio.to_thread(talk)
    assert "STARTTLS" in ehlo_keywords(ehlo)
    assert starttls == [b"454 4.7.0 TLS not available due to local problem"]


def tls_session(
    port: int, ctx: ssl.SSLContext | None = None, *, server_hostname: str = "mx.lab.test"
) -> tuple[str, str, list[bytes], bytes]:
    """EHLO, STARTTLS, handshake, EHLO again. Returns (version, cipher, ehlo2, peer cert DER)."""
    c = Client(port)
    try:
        c.read_reply()
        c.cmd("EHLO client.example")
        assert c.cmd("STARTTLS")[0].startswith(b"220")
        c.starttls(ctx or no_verify(), server_hostname=server_hostname)
        assert isinstance(c.sock, ssl.SSLSocket)
        version, cipher = c.sock.version() or "", c.sock.cipher()[0]  # type: ignore[index]
        der = c.sock.getpeercert(binary_form=True) or b""
        ehlo2 = c.cmd("EHLO client.example")
        c.cmd("QUIT")
        return version, cipher, ehlo2, der
    finally:
        c.close()


async def test_starttls_with_lab_pki_chain_verifies(servers: list[SmtpServer], tmp_path) -> None:
    pki = PKI("http://pki.lab.test:8080")
    root = pki.root("test-root")
    inter = pki.intermediate("test-ca", root)
    leaf = pki.leaf(inter, ["mx1.healthy.lab.test"])
    server = await start(
        servers, cert_chain_pem=leaf.pem_chain(), key_pem=leaf.key_pem(), hostname="mx1"
    )
    ca = tmp_path / "roots.pem"
    ca.write_bytes(pki.roots_pem())
    ctx = ssl.create_default_context(cafile=str(ca))
    version, _cipher, ehlo2, der = await asyncio.to_thread(
        tls_session, server.port, ctx, server_hostname="mx1.healthy.lab.test"
    )
    assert version == "TLSv1.3"
    assert der == leaf.cert_der()
    assert "STARTTLS" not in ehlo_keywords(ehlo2)  # RFC 3207: not offered again
    assert server.log.handshakes == 1
    assert [(c.line.split(" ")[0], c.tls) for c in server.log.commands] == [
        ("EHLO", False),
        ("STARTTLS", False),
        ("EHLO", True),
        ("QUIT", True),
    ]


async def test_starttls_still_offered_after_tls(servers: list[SmtpServer]) -> None:
    server = await start(servers, offer_starttls_after_tls=True)
    _v, _c, ehlo2, _d = await asyncio.to_thread(tls_session, server.port)
    assert "STARTTLS" in ehlo_keywords(ehlo2)


def injection_probe(port: int) -> tuple[bytes, list[bytes]]:
    """Pipeline NOOP behind STARTTLS in plaintext; report what arrives inside TLS unasked."""
    c = Client(port)
    try:
        c.read_reply()
        c.cmd("EHLO client.example")
        c.send("STARTTLS\r\nNOOP\r\n")
        assert c.read_reply()[0].startswith(b"220")
        c.starttls(no_verify())
        c.sock.settimeout(0.5)
        try:
            unasked = c.sock.recv(4096)
        except (TimeoutError, ssl.SSLError):
            unasked = b""
        c.sock.settimeout(3)
        return unasked, c.cmd("QUIT")
    finally:
        c.close()


async def test_injection_vulnerable_answers_buffered_plaintext(servers: list[SmtpServer]) -> None:
    server = await start(servers, injection_vulnerable=True)
    unasked, quit_ = await asyncio.to_thread(injection_probe, server.port)
    assert unasked.startswith(b"250 ")
    assert quit_[0].startswith(b"221")
    assert [(c.line, c.tls) for c in server.log.commands][-2:] == [("NOOP", True), ("QUIT", True)]


async def test_not_vulnerable_discards_buffered_plaintext(servers: list[SmtpServer]) -> None:
    server = await start(servers)
    unasked, quit_ = await asyncio.to_thread(injection_probe, server.port)
    assert unasked == b""
    assert quit_[0].startswith(b"221")
    assert "NOOP" not in server.log.verbs()


async def test_tls12_only(servers: list[SmtpServer]) -> None:
    server = await start(servers, tls_max=ssl.TLSVersion.TLSv1_2)
    version, cipher, _e, _d = await asyncio.to_thread(tls_session, server.port)
    assert version == "TLSv1.2"
    assert cipher.startswith("ECDHE-")


async def test_legacy_tls_only_needs_seclevel_0_on_this_openssl(servers: list[SmtpServer]) -> None:
    server = await start(servers, tls_min=ssl.TLSVersion.TLSv1, tls_max=ssl.TLSVersion.TLSv1_1)
    legacy = no_verify(minimum_version=ssl.TLSVersion.TLSv1)
    legacy.set_ciphers("DEFAULT:@SECLEVEL=0")
    version, _c, _e, _d = await asyncio.to_thread(tls_session, server.port, legacy)
    assert version == "TLSv1.1"

    # A default (TLS 1.2+) client cannot talk to it.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await asyncio.to_thread(tls_session, server.port)

    tls10 = no_verify(minimum_version=ssl.TLSVersion.TLSv1, maximum_version=ssl.TLSVersion.TLSv1)
    tls10.set_ciphers("DEFAULT:@SECLEVEL=0")
    version, _c, _e, _d = await asyncio.to_thread(tls_session, server.port, tls10)
    assert version == "TLSv1"


async def test_legacy_accepted_besides_tls13(servers: list[SmtpServer]) -> None:
    server = await start(servers, tls_min=ssl.TLSVersion.TLSv1)
    version, _c, _e, _d = await asyncio.to_thread(tls_session, server.port)
    assert version == "TLSv1.3"
    tls10 = no_verify(minimum_version=ssl.TLSVersion.TLSv1, maximum_version=ssl.TLSVersion.TLSv1)
    tls10.set_ciphers("DEFAULT:@SECLEVEL=0")
    version, _c, _e, _d = await asyncio.to_thread(tls_session, server.port, tls10)
    assert version == "TLSv1"


async def test_static_rsa_cipher_without_forward_secrecy(servers: list[SmtpServer]) -> None:
    leaf = PKI("http://pki.lab.test").leaf(None, ["mx.lab.test"], key="rsa2048", self_signed=True)
    server = await start(
        servers,
        tls_max=ssl.TLSVersion.TLSv1_2,
        ciphers="AES128-GCM-SHA256",
        cert_chain_pem=leaf.pem_chain(),
        key_pem=leaf.key_pem(),
    )
    client = no_verify()
    client.set_ciphers("ALL:@SECLEVEL=0")
    version, cipher, _e, _d = await asyncio.to_thread(tls_session, server.port, client)
    assert (version, cipher) == ("TLSv1.2", "AES128-GCM-SHA256")


async def test_null_cipher(servers: list[SmtpServer]) -> None:
    server = await start(
        servers, tls_max=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-ECDSA-NULL-SHA:@SECLEVEL=0"
    )
    client = no_verify()
    client.set_ciphers("ALL:eNULL:@SECLEVEL=0")
    version, cipher, _e, _d = await asyncio.to_thread(tls_session, server.port, client)
    assert (version, cipher) == ("TLSv1.2", "ECDHE-ECDSA-NULL-SHA")


@pytest.mark.parametrize("key,sig", [("rsa1024", "sha256"), ("ec", "sha1")])
async def test_weak_leaf_is_served_at_seclevel_0(
    servers: list[SmtpServer], key: str, sig: str
) -> None:
    leaf = PKI("http://pki.lab.test").leaf(
        None, ["mx.lab.test"], key=key, sig_hash=sig, self_signed=True
    )
    server = await start(
        servers,
        ciphers="DEFAULT:@SECLEVEL=0",
        cert_chain_pem=leaf.pem_chain(),
        key_pem=leaf.key_pem(),
    )
    client = no_verify()
    client.set_ciphers("DEFAULT:@SECLEVEL=0")
    _v, _c, _e, der = await asyncio.to_thread(tls_session, server.port, client)
    assert der == leaf.cert_der()


@pytest.mark.parametrize("mode", ["close", "garbage", "client-cert"])
async def test_handshake_fail(servers: list[SmtpServer], mode: str) -> None:
    server = await start(servers, handshake_fail=mode)
    with pytest.raises((ssl.SSLError, ConnectionError, EOFError, OSError)):
        await asyncio.to_thread(tls_session, server.port)
    assert server.log.handshakes == 0


# ------------------------------------------------------------------------------ sockets


async def test_connection_counting(servers: list[SmtpServer]) -> None:
    server = await start(servers)

    def one_at_a_time() -> None:
        for _ in range(3):
            c = Client(server.port)
            c.read_reply()
            c.cmd("QUIT")
            c.close()

    await asyncio.to_thread(one_at_a_time)
    assert (server.log.connections, server.log.max_active) == (3, 1)

    def two_at_once() -> None:
        a, b = Client(server.port), Client(server.port)
        a.read_reply()
        b.read_reply()
        a.close()
        b.close()

    await asyncio.to_thread(two_at_once)
    assert (server.log.connections, server.log.max_active) == (5, 2)


async def test_stop_closes_open_connections() -> None:
    server = await serve(Behaviour(silent=True))
    c = await asyncio.to_thread(Client, server.port)
    try:
        for _ in range(50):
            if server.log.active:
                break
            await asyncio.sleep(0.02)
        await server.stop()

        def read() -> bytes:
            try:
                return c.sock.recv(10)
            except ConnectionResetError:
                return b""

        assert await asyncio.to_thread(read) == b""
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((HOST, server.port), timeout=1).close()
    finally:
        c.close()


async def test_blackhole_gives_a_connect_timeout(servers: list[SmtpServer]) -> None:
    server = await start(servers, blackhole=True)

    def connect() -> str:
        t0 = time.monotonic()
        try:
            socket.create_connection((HOST, server.port), timeout=0.7).close()
            return "connected"
        except TimeoutError:
            return f"timeout after {time.monotonic() - t0:.1f}s"
        except ConnectionRefusedError:
            return "refused"

    assert (await asyncio.to_thread(connect)).startswith("timeout")
