"""The lab's SMTP server: one listener per lab host address, with knobs for every fault.

It speaks just enough SMTP for mxlens to diagnose it: EHLO/HELO, STARTTLS, NOOP, RSET, QUIT.
MAIL, RCPT and DATA are answered 502 and logged in `forbidden`, because mxlens must never try
to send mail; a test can assert that list stays empty.

Built on an asyncio Protocol rather than streams because the server needs two things streams
do not give on Python 3.10: upgrading a live connection to TLS (`loop.start_tls`, 3.7+; the
stream form `StreamWriter.start_tls` is 3.11+), and control over plaintext that was already
buffered when STARTTLS arrived (dropped per RFC 3207, or kept to imitate CVE-2011-0411).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import tempfile
import time
import warnings
from dataclasses import dataclass, field

# A command line longer than this closes the connection: RFC 5321 allows 512 octets, and the
# server must not buffer whatever a confused client streams at it.
MAX_LINE = 4096
# Idle limit per read and a hard limit per session, so no connection outlives a test.
IDLE_TIMEOUT = 60.0
SESSION_LIMIT = 180.0

HANDSHAKE_FAIL_MODES = ("close", "garbage", "client-cert", "after-certificate")
ENDLESS_MODES = ("drip", "lines")


@dataclass
class Behaviour:
    """What one SMTP server does. The defaults are a healthy, modern MX."""

    hostname: str = "mx.lab.test"  # the name in the greeting and the EHLO reply
    greeting_code: int = 220
    greeting_text: str | None = None  # None = "<hostname> ESMTP mxlens-lab"
    # The whole first reply line, raw (bytes, so it can carry invalid UTF-8 and escapes);
    # CRLF is appended. Replaces greeting_code/greeting_text when set.
    banner: bytes | None = None
    silent: bool = False  # accept the connection, never say anything
    # "drip": a reply line that never ends (one byte per drip_interval, no CRLF);
    # "lines": an endless stream of continuation lines. Sent at `endless_at`.
    endless: str | None = None
    endless_at: str = "greeting"  # "greeting" | "ehlo"
    drip_interval: float = 0.05
    lines_interval: float = 0.01  # pause between endless continuation lines
    endless_limit: float = 60.0  # the server gives up after this many seconds
    ehlo_code: int = 250  # anything else rejects EHLO (and HELO) with this code
    malformed: bool = False  # mixed codes and an over-long line in the EHLO reply
    extensions: tuple[str, ...] = ("PIPELINING", "SIZE 36700160", "ENHANCEDSTATUSCODES", "8BITMIME")
    offer_starttls: bool = True
    starttls_reply: str = "220 2.0.0 Ready to start TLS"
    tls_min: ssl.TLSVersion | None = None  # None = TLS 1.2
    tls_max: ssl.TLSVersion | None = None  # None = the newest OpenSSL has
    ciphers: str | None = None  # OpenSSL cipher string for TLS <= 1.2; None = Python's default
    cert_chain_pem: bytes | None = None  # leaf first; None = a throwaway self-signed certificate
    key_pem: bytes | None = None
    offer_starttls_after_tls: bool = False  # the EHLO inside TLS still lists STARTTLS
    injection_vulnerable: bool = False  # answer plaintext pipelined after STARTTLS inside TLS
    # "close": close the socket right after the 220 to STARTTLS; "garbage": answer the
    # ClientHello with text; "client-cert": demand a client certificate (TLS 1.2 alert);
    # "after-certificate": every version's handshake stops right after the server's
    # Certificate with a fatal internal_error alert (like a server that cannot use its key:
    # Debian 12's OpenSMTPD with an RSA key under OpenSSL 3). The alert goes in clear text;
    # under TLS 1.3 a real server would encrypt it, so the client sees a bad record instead.
    handshake_fail: str | None = None
    # A listener whose accept queue is full, so SYNs are dropped: connect timeout.
    blackhole: bool = False
    # The first N connections get "421 ... Too many connections" and a hang-up (a throttle
    # that clears: the client's retry is served normally).
    throttle_first: int = 0
    # Every connection after the first N gets that 421 (0: never): a per-client connection
    # limit that admits the main session and throttles the side probes.
    throttle_after: int = 0
    # Hang up when STARTTLS arrives with another command behind it in the same write, as
    # OpenSMTPD and Dovecot do (the injection test is then inconclusive, not passed).
    drop_pipelined_starttls: bool = False
    # Every even-numbered connection does not offer STARTTLS: a load balancer with one
    # node that lacks it (mxlens --attempts 2 sees the difference).
    starttls_alternate: bool = False
    # TLS from the first byte (submission on port 465), no STARTTLS.
    implicit_tls: bool = False

    def __post_init__(self) -> None:
        if self.endless is not None and self.endless not in ENDLESS_MODES:
            raise ValueError(f"endless must be one of {ENDLESS_MODES}")
        if self.endless_at not in ("greeting", "ehlo"):
            raise ValueError("endless_at must be 'greeting' or 'ehlo'")
        if self.handshake_fail is not None and self.handshake_fail not in HANDSHAKE_FAIL_MODES:
            raise ValueError(f"handshake_fail must be one of {HANDSHAKE_FAIL_MODES}")

    def greeting_line(self) -> bytes:
        if self.banner is not None:
            return self.banner
        text = self.greeting_text
        if text is None:
            text = f"{self.hostname} ESMTP mxlens-lab"
        return f"{self.greeting_code} {text}".encode("utf-8", errors="replace")


@dataclass(frozen=True)
class Command:
    """One command line the server received."""

    conn: int  # connection number on this server, from 1
    line: str  # as received, without CRLF, decoded with replacement characters
    tls: bool  # received inside TLS
    at: float  # time.monotonic()


@dataclass
class ServerLog:
    """What a server saw: for tests that assert how mxlens behaved."""

    connections: int = 0
    active: int = 0
    max_active: int = 0  # the most connections open at the same time
    commands: list[Command] = field(default_factory=list)
    forbidden: list[Command] = field(default_factory=list)  # MAIL / RCPT / DATA
    handshakes: int = 0  # completed TLS handshakes
    handshake_errors: list[str] = field(default_factory=list)

    def verbs(self, conn: int | None = None) -> list[str]:
        """The upper-cased command verbs, optionally of one connection."""
        return [
            c.line.split(" ", 1)[0].upper() for c in self.commands if conn is None or c.conn == conn
        ]


class _Closed(Exception):
    """The peer left, or the session hit a limit."""


class _Session(asyncio.Protocol):
    """One SMTP connection. Data arrives through the Protocol callbacks; `_run` reads it."""

    def __init__(self, server: SmtpServer) -> None:
        self.server = server
        self.b = server.behaviour
        self.buf = bytearray()
        self.wakeup = asyncio.Event()
        self.closed = False
        self.tls = False
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.conn = 0
        self.started = time.monotonic()

    # ---- Protocol callbacks --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        log = self.server.log
        log.connections += 1
        log.active += 1
        log.max_active = max(log.max_active, log.active)
        self.conn = log.connections
        if self.b.implicit_tls:
            self.tls = True  # create_server(ssl=...) completed the handshake already
            log.handshakes += 1
        self.task = asyncio.get_running_loop().create_task(self._run())
        self.server._sessions.add(self)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) > 4 * MAX_LINE:  # a client that never sends a line end
            self._abort()
        self.wakeup.set()

    def eof_received(self) -> bool | None:
        self.closed = True
        self.wakeup.set()
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.wakeup.set()
        self._release()

    # ---- helpers ----------------------------------------------------------------------
    def _release(self) -> None:
        if self in self.server._sessions:
            self.server._sessions.discard(self)
            self.server.log.active -= 1

    def _abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        self.wakeup.set()

    def _write(self, data: bytes) -> None:
        if self.closed or self.transport is None or self.transport.is_closing():
            raise _Closed()
        self.transport.write(data)

    def reply(self, *lines: str | bytes) -> None:
        out = b"".join((ln if isinstance(ln, bytes) else ln.encode()) + b"\r\n" for ln in lines)
        self._write(out)

    async def _flow(self) -> None:
        """Wait while the client does not read, so an endless reply cannot fill memory."""
        assert self.transport is not None
        while not self.closed and self.transport.get_write_buffer_size() > 65536:
            await asyncio.sleep(0.05)

    async def readline(self) -> bytes:
        deadline = time.monotonic() + IDLE_TIMEOUT
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                line = bytes(self.buf[: nl + 1])
                del self.buf[: nl + 1]
                return line.rstrip(b"\r\n")
            if len(self.buf) > MAX_LINE:
                raise _Closed()
            if self.closed:
                raise _Closed()
            left = min(deadline, self.started + SESSION_LIMIT) - time.monotonic()
            if left <= 0:
                raise _Closed()
            self.wakeup.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), left)

    # ---- the dialogue -----------------------------------------------------------------
    async def _run(self) -> None:
        try:
            await self._dialogue()
        except (_Closed, ConnectionError):
            pass
        except asyncio.CancelledError:
            raise
        finally:
            self.closed = True
            if self.transport is not None and not self.transport.is_closing():
                self.transport.close()
            self._release()

    async def _dialogue(self) -> None:
        b = self.b
        if b.silent:
            # Hold the connection open without a word until the client gives up.
            while not self.closed and time.monotonic() - self.started < b.endless_limit:
                self.wakeup.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.wakeup.wait(), 1.0)
                self.buf.clear()
            return
        if b.endless is not None and b.endless_at == "greeting":
            await self._endless("220")
            return
        if self.conn <= b.throttle_first or 0 < b.throttle_after < self.conn:
            self.reply(f"421 4.7.0 {b.hostname} Too many connections, try again later")
            return
        self.reply(b.greeting_line())
        greeting_ok = b.banner is not None or b.greeting_code == 220
        if not greeting_ok and 400 <= b.greeting_code < 500:
            return  # 421 and friends: say it and hang up, as busy servers do
        ehlo_seen = False
        while True:
            raw = await self.readline()
            line = raw.decode("utf-8", errors="replace")
            cmd = Command(self.conn, line, self.tls, time.monotonic())
            self.server.log.commands.append(cmd)
            verb = line.split(" ", 1)[0].upper()
            arg = line[len(verb) :].strip()
            if verb == "QUIT":
                self.reply("221 2.0.0 Bye")
                return
            if not greeting_ok:
                self.reply("503 5.5.1 No service here")
                continue
            if verb in ("EHLO", "HELO"):
                if b.endless is not None and b.endless_at == "ehlo":
                    await self._endless("250")
                    return
                ehlo_seen = self._ehlo(verb, arg) or ehlo_seen
            elif verb == "STARTTLS":
                if not await self._starttls(ehlo_seen):
                    continue
                ehlo_seen = False
            elif verb in ("NOOP", "RSET"):
                self.reply("250 2.0.0 OK")
            elif verb in ("MAIL", "RCPT", "DATA"):
                self.server.log.forbidden.append(cmd)
                self.reply("502 5.5.1 mxlens-lab: mail transactions are not accepted here")
            else:
                self.reply("500 5.5.2 Command not recognised")

    def _ehlo(self, verb: str, arg: str) -> bool:
        b = self.b
        if b.ehlo_code != 250:
            self.reply(f"{b.ehlo_code} 5.7.1 <{arg}>: {verb} rejected by policy")
            return False
        if verb == "HELO":
            self.reply(f"250 {b.hostname}")
            return True
        exts = list(b.extensions)
        offer = b.offer_starttls and not (b.starttls_alternate and self.conn % 2 == 0)
        if offer and (not self.tls or b.offer_starttls_after_tls):
            exts.insert(1, "STARTTLS")
        first = f"{b.hostname} Hello {arg or 'there'}"
        if b.malformed:
            lines = [f"250-{first}", "251-PIPELINING", "250-X-LAB-PADDING " + "x" * 600]
            lines += [f"250-{e}" for e in exts if e != "PIPELINING"][:-1]
            lines.append(f"250 {exts[-1]}")
        else:
            body = [first, *exts]
            lines = [f"250-{t}" for t in body[:-1]] + [f"250 {body[-1]}"]
        self.reply(*lines)
        return True

    async def _starttls(self, ehlo_seen: bool) -> bool:
        """Handle STARTTLS. True when the connection is now inside TLS."""
        b = self.b
        if self.tls and not b.offer_starttls_after_tls:
            self.reply("554 5.5.1 TLS already active")
            return False
        if not b.offer_starttls or (b.starttls_alternate and self.conn % 2 == 0):
            self.reply("502 5.5.1 STARTTLS not supported")
            return False
        if not b.starttls_reply.startswith("220"):
            self.reply(b.starttls_reply)
            return False
        if self.tls:
            # A second STARTTLS inside TLS: a real server would need TLS-in-TLS; refuse it.
            self.reply("454 4.7.0 TLS already active")
            return False
        if b.drop_pipelined_starttls and self.buf:
            raise _Closed()
        self.reply(b.starttls_reply)
        if b.handshake_fail == "close":
            raise _Closed()
        if b.handshake_fail == "garbage":
            self._write(b"this is not a TLS ServerHello\r\n")
            raise _Closed()
        if b.handshake_fail == "after-certificate":
            self.buf.clear()
            await self._fail_after_certificate()
            raise _Closed()
        pending = bytes(self.buf)
        self.buf.clear()  # RFC 3207: plaintext sent before the handshake is discarded
        loop = asyncio.get_running_loop()
        assert self.transport is not None
        try:
            new = await loop.start_tls(
                self.transport,
                self,
                self.server.context,
                server_side=True,
                ssl_handshake_timeout=30.0,
            )
        except (ssl.SSLError, OSError, asyncio.TimeoutError, ConnectionError) as exc:
            self.server.log.handshake_errors.append(f"{type(exc).__name__}: {exc}")
            raise _Closed() from None
        if new is None:
            raise _Closed()
        assert isinstance(new, asyncio.Transport)
        self.transport = new
        self.tls = True
        self.server.log.handshakes += 1
        if b.injection_vulnerable and pending:
            # CVE-2011-0411: the buffered plaintext is treated as if it came inside TLS.
            self.buf[:0] = pending
        return True

    async def _fail_after_certificate(self) -> None:
        """Run the server's side of the handshake in memory and put on the wire only what
        precedes its key being used: ServerHello and Certificate (TLS 1.2: repacked as one
        record; TLS 1.3: the records up to the encrypted Certificate), then a fatal
        internal_error alert. The client sees the chain, then the failure."""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self.server.context.wrap_bio(incoming, outgoing, server_side=True)
        deadline = time.monotonic() + IDLE_TIMEOUT
        flight = b""
        while not flight:
            while not self.buf:
                if self.closed or time.monotonic() > deadline:
                    raise _Closed()
                self.wakeup.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.wakeup.wait(), 1.0)
            incoming.write(bytes(self.buf))
            self.buf.clear()
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                self.server.log.handshake_errors.append(f"{type(exc).__name__}: {exc}")
            flight = outgoing.read()
        self._write(_up_to_certificate(flight) + _ALERT_INTERNAL_ERROR)
        self.server.log.handshake_errors.append("after-certificate: internal_error sent")

    async def _endless(self, code: str) -> None:
        """Send a reply that never completes, until the client leaves or the limit."""
        b = self.b
        end = time.monotonic() + b.endless_limit
        if b.endless == "drip":
            text = f"{code} {b.hostname} ESMTP this reply line never ends ".encode()
            i = 0
            while time.monotonic() < end:
                self._write(text[i % len(text) : i % len(text) + 1])
                i += 1
                await asyncio.sleep(b.drip_interval)
        else:
            n = 0
            while time.monotonic() < end:
                n += 1
                self._write(f"{code}-{b.hostname} continuation line {n}\r\n".encode())
                await self._flow()
                await asyncio.sleep(b.lines_interval)


_ALERT_INTERNAL_ERROR = b"\x15\x03\x03\x00\x02\x02\x50"  # fatal (2) internal_error (80)


def _records(data: bytes) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos + 5 <= len(data):
        size = int.from_bytes(data[pos + 3 : pos + 5], "big")
        out.append((data[pos], data[pos : pos + 5 + size]))
        pos += 5 + size
    return out


def _up_to_certificate(flight: bytes) -> bytes:
    """The part of a server's first flight up to and including its Certificate."""
    records = _records(flight)
    if any(kind == 23 for kind, _ in records):
        # TLS 1.3: ServerHello, ChangeCipherSpec, then one encrypted record per message
        # (EncryptedExtensions, Certificate, CertificateVerify, Finished) from OpenSSL.
        out, encrypted = b"", 0
        for kind, raw in records:
            out += raw
            encrypted += kind == 23
            if encrypted == 2:
                break
        return out
    # TLS 1.2: plaintext handshake messages, possibly several per record.
    body = b"".join(raw[5:] for kind, raw in records if kind == 22)
    kept, pos = b"", 0
    while pos + 4 <= len(body):
        size = int.from_bytes(body[pos + 1 : pos + 4], "big")
        message = body[pos : pos + 4 + size]
        kept += message
        pos += 4 + size
        if message[0] == 11:  # Certificate
            break
    return b"\x16\x03\x03" + len(kept).to_bytes(2, "big") + kept


def server_context(b: Behaviour) -> ssl.SSLContext:
    """The TLS context for a Behaviour: versions, ciphers, certificate, client-cert demand."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ciphers = b.ciphers
    legacy = b.tls_min is not None and b.tls_min < ssl.TLSVersion.TLSv1_2
    if legacy and (ciphers is None or "@SECLEVEL" not in ciphers):
        # OpenSSL 3 offers TLS 1.0/1.1 only at security level 0.
        ciphers = (ciphers or "DEFAULT") + ":@SECLEVEL=0"
    if ciphers is not None:
        ctx.set_ciphers(ciphers)  # before loading the key: the level also judges the key
    with warnings.catch_warnings():
        # Python deprecates TLS 1.0/1.1; staging servers that still speak them is the point.
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = b.tls_min or ssl.TLSVersion.TLSv1_2
        ctx.maximum_version = b.tls_max or ssl.TLSVersion.MAXIMUM_SUPPORTED
    chain, key = b.cert_chain_pem, b.key_pem
    if chain is None or key is None:
        chain, key = _throwaway_cert(b.hostname)
    _load_chain(ctx, chain, key)
    if b.handshake_fail == "client-cert":
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=chain.decode("ascii"))
        # TLS 1.3 reports a missing client certificate only after the client finished; 1.2
        # fails inside the handshake, which is the failure this knob is for.
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _load_chain(ctx: ssl.SSLContext, chain: bytes, key: bytes) -> None:
    # ssl loads certificates only from files: write them to a private directory, load, delete.
    with tempfile.TemporaryDirectory(prefix="mxlens-lab-") as tmp:
        cert_path = os.path.join(tmp, "chain.pem")
        key_path = os.path.join(tmp, "key.pem")
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        with open(cert_path, "wb") as f:
            f.write(chain)
        ctx.load_cert_chain(cert_path, key_path)


def _throwaway_cert(hostname: str) -> tuple[bytes, bytes]:
    from .pki import PKI

    issued = PKI("http://pki.invalid").leaf(None, [hostname], self_signed=True)
    return issued.pem_chain(), issued.key_pem()


class SmtpServer:
    """One SMTP listener on one address and port."""

    def __init__(self, host: str, port: int, behaviour: Behaviour | None = None) -> None:
        self.host = host
        self.port = port
        self.behaviour = behaviour or Behaviour()
        self.log = ServerLog()
        self.context = server_context(self.behaviour)
        self._server: asyncio.AbstractServer | None = None
        self._sessions: set[_Session] = set()
        self._blackhole: list[socket.socket] = []  # the listening socket and its queue fillers

    async def start(self) -> None:
        """Listen. Raises OSError when the address or port cannot be bound."""
        if self.behaviour.blackhole:
            self._start_blackhole()
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Session(self),
            self.host,
            self.port,
            reuse_address=True,
            backlog=64,
            ssl=self.context if self.behaviour.implicit_tls else None,
            ssl_handshake_timeout=30.0 if self.behaviour.implicit_tls else None,
        )
        if self.port == 0:
            sockets: list[socket.socket] = list(getattr(self._server, "sockets", None) or [])
            self.port = sockets[0].getsockname()[1]

    def _start_blackhole(self) -> None:
        # listen(0) keeps one connection in the accept queue; fill it (and one more in
        # SYN_SENT for safety) and never accept, so the kernel drops further SYNs: the client
        # sees a connect timeout, not a refusal. Checked on Linux; see lab/scenarios.py.
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind((self.host, self.port))
            ls.listen(0)
        except OSError:
            ls.close()
            raise
        self.port = ls.getsockname()[1]
        self._blackhole.append(ls)
        for _ in range(2):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError, OSError):
                filler.connect((self.host, self.port))
            self._blackhole.append(filler)

    async def stop(self) -> None:
        """Stop listening and close every open connection."""
        for sock in self._blackhole:
            with contextlib.suppress(OSError):
                sock.close()
        self._blackhole.clear()
        if self._server is not None:
            self._server.close()
        tasks = []
        for s in list(self._sessions):
            s.closed = True
            if s.transport is not None:
                s.transport.abort()
            if s.task is not None:
                s.task.cancel()
                tasks.append(s.task)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
