"""The SMTP connection: a capped reply reader, the transcript, STARTTLS and the handshake.

greeting -> EHLO -> STARTTLS -> TLS handshake -> EHLO -> QUIT (or, with implicit TLS, the
handshake first). MAIL, RCPT and DATA are never sent. Every line in and out, every handshake
step and every event (timeout, reset) becomes a TranscriptLine as it happens; what went wrong
is judged by checks/session.py, which turns it into findings pointing at transcript lines.

The connection is a small asyncio.Protocol with a capped line buffer, upgraded with
`loop.start_tls`, so it runs on Python 3.10 (StreamWriter.start_tls is 3.11+). Servers are
treated as hostile: lines, replies and the time each step may take are all capped.
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field

from probes.model.events import (
    Direction,
    Event,
    SessionPurpose,
    TranscriptLine,
    Waiting,
    Where,
)
from probes.model.options import Options
from probes.model.safetext import decode
from probes.net.tls import (
    HandshakeRecorder,
    TlsOffer,
    describe_handshake_error,
    lease_context,
    peer_chain_der,
    release_context,
)

MAX_LINE_OCTETS = 512  # RFC 5321 4.5.3.1.5, CRLF included
MAX_REPLY_LINES = 100
MAX_REPLY_OCTETS = 64 * 1024
# Bytes of one line the connection keeps; the rest is counted, not stored.
_KEEP_PER_LINE = 1024
# Unread lines held before the socket stops being read (back-pressure, not a verdict).
_QUEUE_OCTETS = 128 * 1024
_QUIT_WAIT = 2.0  # a missing QUIT reply proves nothing; do not wait the full step timeout

_RATE_WORDS = re.compile(r"too many|\brate\b|rate[ -]?limit", re.IGNORECASE)
_VALID_CODE = re.compile(r"[2-5][0-5][0-9]")


# --------------------------------------------------------------------------- reply parser


@dataclass
class Reply:
    """One SMTP reply. `lines` are the lines as received (decoded, cut at 512 octets);
    `text` is the text after the code on each line, joined with newlines. `malformed`
    lists RFC 5321 violations; `overflow` means a cap was hit and reading stopped."""

    code: int
    lines: list[str]
    text: str
    malformed: list[str] = field(default_factory=list)
    overflow: bool = False

    @property
    def keywords(self) -> list[str]:
        """EHLO extension keywords (upper case), from the lines after the first."""
        return [word for word in self._line_keywords()[1:] if word]

    def _line_keywords(self) -> list[str]:
        # One entry per line (empty for a line without a keyword), so a keyword's position
        # is the position of its line even when an empty "250-" line comes before it.
        out: list[str] = []
        for part in self.text.split("\n"):
            words = part.split()
            out.append(words[0].upper() if words else "")
        return out

    def keyword_line(self, keyword: str) -> int | None:
        """Index in `lines` of the EHLO line that advertises `keyword`, or None."""
        found = self._line_keywords()
        for index in range(1, len(found)):
            if found[index] == keyword.upper():
                return index
        return None


class ReplyParser:
    """Feed lines (without CRLF); get a Reply when one is complete.

    A line is `code[-| ]text`; a bare code ("250") ends a reply. A first line without a
    3-digit code is a complete (malformed) reply of code 0; inside a multi-line reply such a
    line is kept as a malformed continuation, so one bad line does not desynchronise the
    dialogue. Caps: 100 lines and 64 KiB per reply; past them the reply is returned with
    `overflow` set and the caller must stop reading.
    """

    def __init__(self) -> None:
        self._reset()
        self.last_text = ""

    def _reset(self) -> None:
        self._code: int | None = None
        self._lines: list[str] = []
        self._parts: list[str] = []
        self._malformed: list[str] = []
        self._octets = 0

    @property
    def pending(self) -> bool:
        return bool(self._lines)

    def feed(self, line: bytes | str, *, octets: int | None = None) -> Reply | None:
        """Add one line. `octets` is its length on the wire including CRLF, when the caller
        kept only part of a long line; otherwise it is the length of `line` plus 2."""
        raw = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else bytes(line)
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        size = octets if octets is not None else len(raw) + 2
        number = len(self._lines) + 1
        self._octets += size
        if size > MAX_LINE_OCTETS:
            self._malformed.append(
                f"line {number} is {size} octets (RFC 5321 allows {MAX_LINE_OCTETS})"
            )
            raw = raw[: MAX_LINE_OCTETS - 2]
        text = decode(raw)
        self.last_text = text
        self._lines.append(text)
        head = raw[:3]
        final: bool
        if len(head) == 3 and head.isdigit():
            code = int(head)
            sep = raw[3:4]
            part = decode(raw[4:])
            if sep in (b"", b" "):
                final = True
            elif sep == b"-":
                final = False
            else:
                self._malformed.append(f"line {number}: no space or hyphen after the code")
                final = True
                part = decode(raw[3:])
            if self._code is None:
                self._code = code
                if not _VALID_CODE.fullmatch(head.decode("ascii")):
                    self._malformed.append(f"{code} is not a valid reply code")
            elif code != self._code:
                self._malformed.append(
                    f"mixed codes: line {number} has {code}, the reply began with {self._code}"
                )
        else:
            self._malformed.append(f"line {number} does not start with a 3-digit code")
            part = text
            final = self._code is None
            if self._code is None:
                self._code = 0
        self._parts.append(part)
        if not final and (len(self._lines) >= MAX_REPLY_LINES or self._octets > MAX_REPLY_OCTETS):
            reason = (
                f"reply longer than {MAX_REPLY_LINES} lines"
                if len(self._lines) >= MAX_REPLY_LINES
                else f"reply longer than {MAX_REPLY_OCTETS} octets"
            )
            self._malformed.append(reason)
            return self._finish(overflow=True)
        if final and self._octets > MAX_REPLY_OCTETS:
            self._malformed.append(f"reply longer than {MAX_REPLY_OCTETS} octets")
            return self._finish(overflow=True)
        return self._finish() if final else None

    def _finish(self, *, overflow: bool = False) -> Reply:
        reply = Reply(
            code=self._code or 0,
            lines=self._lines,
            text="\n".join(self._parts),
            malformed=self._malformed,
            overflow=overflow,
        )
        self._reset()
        return reply

    def end(self) -> Reply | None:
        """The input ended: the reply in progress, marked as cut short (None if none)."""
        if not self._lines:
            return None
        self._malformed.append("the reply ended without a final line")
        return self._finish()


def parse_reply(lines: Iterable[bytes | str]) -> Reply:
    """Parse the first complete reply in `lines` (later lines are ignored)."""
    parser = ReplyParser()
    for line in lines:
        reply = parser.feed(line)
        if reply is not None:
            return reply
    reply = parser.end()
    if reply is None:
        return Reply(code=0, lines=[], text="", malformed=["no reply lines"])
    return reply


# --------------------------------------------------------------------------- the connection


class _Overlong(Exception):
    pass


class _Closed(Exception):
    def __init__(self, exc: BaseException | None) -> None:
        super().__init__(str(exc) if exc else "closed")
        self.exc = exc


class _Timeout(Exception):
    pass


@dataclass(frozen=True)
class _Line:
    raw: bytes  # at most _KEEP_PER_LINE bytes, without the line terminator
    octets: int  # length on the wire, terminator included
    t_ms: float


class _LineProtocol(asyncio.Protocol):
    """Splits the byte stream into lines with hard caps, for both clear text and TLS."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.transport: asyncio.BaseTransport | None = None
        self._buf = bytearray()
        self._pending = 0  # octets of the unfinished line, kept or not
        self._lines: deque[_Line] = deque()
        self._queued = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.close_exc: BaseException | None = None
        self.overlong = False
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.overlong:
            return
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                self._add(data[start:])
                break
            self._add(data[start : end + 1])
            self._end_line()
            start = end + 1
        if self._pending > MAX_REPLY_OCTETS:
            # An endless line: stop reading now rather than count it for ever.
            self.overlong = True
            self._pause()
        elif self._queued > _QUEUE_OCTETS:
            self._pause()
        self._wake()

    def eof_received(self) -> bool | None:
        return False  # let the transport close; connection_lost tells the reader

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.close_exc = exc
        if not self.lost.done():
            self.lost.set_result(None)
        self._wake()

    # buffer

    def _add(self, chunk: bytes) -> None:
        room = _KEEP_PER_LINE - len(self._buf)
        if room > 0:
            self._buf += chunk[:room]
        self._pending += len(chunk)

    def _end_line(self) -> None:
        raw = bytes(self._buf)
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        self._lines.append(_Line(raw, self._pending, self._clock()))
        self._queued += len(raw)
        self._buf.clear()
        self._pending = 0

    def _pause(self) -> None:
        transport = self.transport
        if not self._paused and isinstance(transport, asyncio.ReadTransport):
            try:
                transport.pause_reading()
                self._paused = True
            except (RuntimeError, AttributeError):
                pass

    def _resume(self) -> None:
        transport = self.transport
        if self._paused and isinstance(transport, asyncio.ReadTransport) and not self.overlong:
            try:
                transport.resume_reading()
            except (RuntimeError, AttributeError):
                pass
            self._paused = False

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def take_unread(self) -> list[_Line]:
        """Drop and return whatever was received but not read yet (before a TLS upgrade)."""
        lines = list(self._lines)
        if self._buf or self._pending:
            lines.append(_Line(bytes(self._buf), self._pending, self._clock()))
        self._lines.clear()
        self._queued = 0
        self._buf.clear()
        self._pending = 0
        self._paused = False
        return lines

    def partial(self) -> bytes:
        """The kept start of the line still being received (for an endless line)."""
        return bytes(self._buf[: MAX_LINE_OCTETS - 2])

    async def next_line(self, deadline: float) -> _Line:
        loop = asyncio.get_running_loop()
        while True:
            if self._lines:
                line = self._lines.popleft()
                self._queued -= len(line.raw)
                if self._queued <= _QUEUE_OCTETS // 2:
                    self._resume()
                return line
            if self.overlong:
                raise _Overlong()
            if self.closed:
                raise _Closed(self.close_exc)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise _Timeout()
            self._waiter = loop.create_future()
            try:
                await asyncio.wait_for(self._waiter, remaining)
            except asyncio.TimeoutError:
                raise _Timeout() from None
            finally:
                self._waiter = None


class Transcript:
    """Numbering and timing of one session's transcript (shared by the connections of a
    multi-connection probe such as the version sweep)."""

    def __init__(self, where: Where, purpose: SessionPurpose) -> None:
        self.where = where
        self.purpose = purpose
        self.index = 0  # the index the next line will get
        self._t0 = time.monotonic()
        self._last_ms = 0.0

    def t_ms(self) -> float:
        return round((time.monotonic() - self._t0) * 1000.0, 3)

    def line(self, direction: Direction, text: str, t_ms: float | None = None) -> TranscriptLine:
        # A reply is stamped when its bytes arrived, which can be before the line shown just
        # above it was made (a handshake step drained late): the transcript reads top to
        # bottom, so its times never go backwards.
        stamp = max(self.t_ms() if t_ms is None else t_ms, self._last_ms)
        self._last_ms = stamp
        line = TranscriptLine(self.where, self.purpose, stamp, direction, text, self.index)
        self.index += 1
        return line


@dataclass
class TlsState:
    """What a completed handshake gave: enough for TlsNegotiated and ChainReceived."""

    version: str
    cipher: str
    bits: int | None
    group: str | None
    steps: tuple[str, ...]
    sni: str | None
    chain: list[bytes]


class SmtpConnection:
    """One TCP connection and the SMTP steps on it. Each step is an async generator of
    events; afterwards the attributes say how it went (`stopped_at` is the step where the
    dialogue stopped, with `stop_index` the transcript line that shows why)."""

    def __init__(self, where: Where, options: Options, transcript: Transcript) -> None:
        self.where = where
        self.options = options
        self.timeout = float(options.timeout)
        self.transcript = transcript
        self.address = where.address or where.host
        self.port = where.port if where.port is not None else options.port
        self.proto: _LineProtocol | None = None
        self.raw: asyncio.Transport | None = None
        self.transport: asyncio.BaseTransport | None = None
        self.recorder: HandshakeRecorder | None = None
        # results
        self.stopped_at: str | None = None
        self.stop_index: int | None = None
        self.stop_reply: Reply | None = None
        self.stop_failure: str | None = None
        self.stop_what = ""
        self.connect_error: str | None = None  # "refused", "timeout", "unreachable"
        self.failure: str | None = None  # last read: "timeout", "closed", "reset", "overflow"
        self.failure_what = ""
        self.reply: Reply | None = None
        self.reply_index = 0  # transcript index of the first line of `reply`
        self.reply_indexes: list[int] = []
        self.ehlo_reply: Reply | None = None
        self.ehlo_index = 0
        self.ehlo_indexes: list[int] = []
        self.starttls: bool | None = None
        self.malformed: list[tuple[int, list[str]]] = []
        self.tls: TlsState | None = None
        self.tls_index = 0
        self.tls_error: str | None = None
        self.tls_timed_out = False
        # A failed handshake: the version the server chose and the chain it sent before the
        # failure (both empty when it failed before its ServerHello / Certificate).
        self.failed_version: str | None = None
        self.failed_chain: list[bytes] = []
        self.failed_before_hello = False
        self.handshake_steps: list[str] = []
        self.failure_index = 0
        self.overflowed = False
        self.dead = False  # aborted: nothing more to read or write
        self._leased: list[tuple[TlsOffer, ssl.SSLContext]] = []

    # --- basic operations

    def _stop(self, step: str, index: int) -> None:
        # Remember the reply or failure now: the QUIT that follows overwrites `reply`.
        if self.stopped_at is None:
            self.stopped_at = step
            self.stop_index = index
            self.stop_reply = self.reply
            self.stop_failure = self.failure
            self.stop_what = self.failure_what

    def _tls_lines(self) -> Iterator[TranscriptLine]:
        # Handshake messages that arrive after the handshake (NewSessionTicket, alerts).
        if self.recorder is not None:
            for t_ms, text in self.recorder.drain():
                yield self.transcript.line("TLS", text, t_ms)

    def _waiting(self, what: str) -> Waiting:
        t = self.transcript
        return Waiting(t.where, t.purpose, what, t.t_ms())

    async def connect(self) -> AsyncIterator[Event]:
        loop = asyncio.get_running_loop()
        proto = _LineProtocol(self.transcript.t_ms)
        reason = ""
        yield self._waiting("TCP connection")
        try:
            # Numeric host only: every name lookup goes through probes.net.dns.Resolver.
            transport, _ = await asyncio.wait_for(
                loop.create_connection(
                    lambda: proto, self.address, self.port, flags=socket.AI_NUMERICHOST
                ),
                self.timeout,
            )
        except asyncio.TimeoutError:
            self.connect_error = "timeout"
            reason = (
                f"no TCP answer from {self.address} port {self.port} within {self.timeout:.1f} s"
            )
        except ConnectionRefusedError:
            self.connect_error = "refused"
            reason = f"connection to {self.address} port {self.port} refused"
        except socket.gaierror as exc:
            self.connect_error = "unreachable"
            reason = f"cannot connect to {self.address!r}: not an IP address ({exc.strerror})"
        except OSError as exc:
            self.connect_error, reason = classify_connect_error(exc, self.address, self.port)
        else:
            self.proto = proto
            self.raw = transport
            self.transport = transport
            return
        line = self.transcript.line("!", reason)
        self._stop("connect", self.transcript.index - 1)
        yield line

    def send(self, text: str) -> list[TranscriptLine]:
        """Write one or more lines (`text` without the final CRLF; CRLF between lines)."""
        commands = text.split("\r\n")
        lines = [self.transcript.line("C", command) for command in commands]
        transport = self.transport
        if transport is not None and not transport.is_closing():
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(("\r\n".join(commands) + "\r\n").encode("utf-8", "replace"))
        return lines

    async def read_reply(
        self, what: str, *, timeout: float | None = None, quiet: bool = False
    ) -> AsyncIterator[Event]:
        """Read one complete reply into `self.reply`. On failure `reply` is None and
        `failure` / `failure_index` say what happened (a "!" line unless quiet)."""
        self.reply = None
        self.failure = None
        self.failure_what = what
        self.reply_indexes = []
        if self.proto is None or self.dead:
            self.failure = "closed"
            self.failure_index = max(self.transcript.index - 1, 0)
            return
        wait = self.timeout if timeout is None else timeout
        deadline = asyncio.get_running_loop().time() + wait
        parser = ReplyParser()
        yield self._waiting(what)
        while True:
            try:
                line = await self.proto.next_line(deadline)
            except _Timeout:
                self.failure = "timeout"
                message = f"timeout waiting for the {what} after {wait:.1f} s"
            except _Overlong:
                self.failure = "overflow"
                yield self.transcript.line("S", decode(self.proto.partial()))
                message = (
                    f"a line longer than {MAX_REPLY_OCTETS} octets without an end while "
                    f"waiting for the {what}; stopped reading"
                )
            except _Closed as closed:
                reset = isinstance(closed.exc, ConnectionResetError)
                self.failure = "reset" if reset else "closed"
                state = "reset" if reset else "closed"
                message = f"connection {state} by server while waiting for the {what}"
            else:
                for tls_line in self._tls_lines():
                    yield tls_line
                reply = parser.feed(line.raw, octets=line.octets)
                self.reply_indexes.append(self.transcript.index)
                yield self.transcript.line("S", parser.last_text, line.t_ms)
                if line.octets > MAX_LINE_OCTETS:
                    yield self.transcript.line(
                        "!",
                        f"the line above was {line.octets} octets; "
                        f"only the first {MAX_LINE_OCTETS - 2} are kept",
                    )
                if reply is None:
                    continue
                self.reply_index = self.reply_indexes[0]
                if reply.overflow:
                    self.failure = "overflow"
                    self.overflowed = True
                    self.failure_index = self.transcript.index
                    yield self.transcript.line(
                        "!", f"{reply.malformed[-1]} while waiting for the {what}; stopped reading"
                    )
                    self._abort()
                    return
                if reply.malformed:
                    self.malformed.append((self.reply_index, list(reply.malformed)))
                self.reply = reply
                return
            for tls_line in self._tls_lines():
                yield tls_line
            if self.failure == "overflow":
                self.overflowed = True
                self._abort()
            if quiet and self.failure != "overflow":
                self.failure_index = max(self.transcript.index - 1, 0)
                return
            self.failure_index = self.transcript.index
            yield self.transcript.line("!", message)
            return

    def _abort(self) -> None:
        self.dead = True
        if self.raw is not None:
            self.raw.abort()

    def _failed_read(self, step: str) -> bool:
        """After read_reply: record a failed read as the stop of `step`."""
        if self.reply is not None:
            return False
        self._stop(step, self.failure_index)
        return True

    def client_context(self, offer: TlsOffer, recorder: HandshakeRecorder) -> ssl.SSLContext:
        """A pooled client context for this connection's handshake, given back on close()."""
        ctx = lease_context(offer, recorder)
        self._leased.append((offer, ctx))
        return ctx

    async def quit(self, *, wait: bool = True) -> AsyncIterator[Event]:
        """QUIT, best effort: a missing reply to it proves nothing. wait=False sends it and
        reads nothing (a probe connection whose 221 would only cost a round trip)."""
        if self.dead or self.transport is None or self.transport.is_closing():
            return
        for line in self.send("QUIT"):
            yield line
        if not wait:
            return
        async for event in self.read_reply(
            "QUIT reply", timeout=min(self.timeout, _QUIT_WAIT), quiet=True
        ):
            yield event

    # --- SMTP steps

    async def greeting(self) -> AsyncIterator[Event]:
        async for event in self.read_reply("greeting"):
            yield event
        if self._failed_read("greeting"):
            return
        assert self.reply is not None
        if self.reply.code != 220:
            self._stop("greeting", self.reply_index)
            async for event in self.quit():
                yield event

    async def ehlo(self, name: str, *, step: str = "ehlo") -> AsyncIterator[Event]:
        for line in self.send(f"EHLO {name}"):
            yield line
        async for event in self.read_reply("EHLO reply"):
            yield event
        if self._failed_read(step):
            return
        assert self.reply is not None
        self.ehlo_reply = self.reply
        self.ehlo_index = self.reply_index
        self.ehlo_indexes = list(self.reply_indexes)
        if self.reply.code != 250:
            self._stop(step, self.reply_index)
            async for event in self.quit():
                yield event

    async def starttls_command(self, *, pipeline_noop: bool = False) -> AsyncIterator[Event]:
        for line in self.send("STARTTLS\r\nNOOP" if pipeline_noop else "STARTTLS"):
            yield line
        async for event in self.read_reply("STARTTLS reply"):
            yield event
        if self._failed_read("starttls"):
            return
        assert self.reply is not None
        if self.reply.code != 220:
            self._stop("starttls", self.reply_index)
            async for event in self.quit():
                yield event

    def discard_plaintext(self, when: str) -> Iterator[TranscriptLine]:
        """Show and drop what the server sent in clear text that TLS must not see."""
        if self.proto is None:
            return
        unread = self.proto.take_unread()
        for line in unread:
            yield self.transcript.line("S", decode(line.raw[: MAX_LINE_OCTETS - 2]), line.t_ms)
        if unread:
            yield self.transcript.line(
                "!", f"{len(unread)} line(s) received in clear text {when}; ignored"
            )

    async def handshake(
        self, ctx: ssl.SSLContext, recorder: HandshakeRecorder, sni: str | None
    ) -> AsyncIterator[Event]:
        """Upgrade the connection to TLS; fills `tls` or `tls_error`, `tls_index`."""
        self.recorder = recorder
        for line in self.discard_plaintext("before the TLS handshake"):
            yield line
        assert self.proto is not None and self.transport is not None
        error: BaseException | None = None
        new_transport: asyncio.BaseTransport | None = None
        if self.proto.closed or self.transport.is_closing():
            # The server hung up right after its 220: there is nothing to shake hands with
            # (and start_tls on a dead transport would only wait for its timeout).
            error = EOFError("connection closed by server before the handshake")
        else:
            yield self._waiting("TLS handshake")
            try:
                new_transport = await self._start_tls(ctx, sni)
            except asyncio.TimeoutError:
                error = TimeoutError("taking longer")
            except (ssl.SSLError, OSError, EOFError) as exc:
                error = exc
        if new_transport is None and error is None:
            error = EOFError("connection closed during the handshake")
        for t_ms, text in recorder.drain():
            self.handshake_steps.append(text)
            yield self.transcript.line("TLS", text, t_ms)
        if error is not None or new_transport is None:
            assert error is not None
            reason, timed_out = describe_handshake_error(error, recorder, self.timeout)
            self.tls_error = reason
            self.tls_timed_out = timed_out
            self.failed_version = recorder.server_version
            self.failed_chain = list(recorder.certificates)
            self.failed_before_hello = recorder.client_hello_sent and not recorder.server_hello_seen
            self.tls_index = self.transcript.index
            self._stop("handshake", self.tls_index)
            yield self.transcript.line("!", f"handshake failed: {reason}")
            self._abort()
            self.transport = None
            return
        self.transport = new_transport
        self.proto.transport = new_transport
        sslobj = new_transport.get_extra_info("ssl_object")
        version = str(sslobj.version() or "unknown") if sslobj is not None else "unknown"
        cipher_info = sslobj.cipher() if sslobj is not None else None
        cipher = str(cipher_info[0]) if cipher_info else "unknown"
        bits = int(cipher_info[2]) if cipher_info and cipher_info[2] is not None else None
        group = recorder.group(version, cipher)
        chain = peer_chain_der(sslobj) if sslobj is not None else []
        self.tls_index = self.transcript.index
        done = f"handshake done: {version} {cipher}" + (f" {group}" if group else "")
        yield self.transcript.line("TLS", done)
        self.handshake_steps.append(done)
        self.tls = TlsState(version, cipher, bits, group, tuple(self.handshake_steps), sni, chain)

    async def _start_tls(self, ctx: ssl.SSLContext, sni: str | None) -> asyncio.BaseTransport:
        loop = asyncio.get_running_loop()
        assert self.proto is not None and self.transport is not None
        return await asyncio.wait_for(
            loop.start_tls(
                self.transport,  # type: ignore[arg-type]
                self.proto,
                ctx,
                server_hostname=sni,
                ssl_handshake_timeout=self.timeout,
            ),
            self.timeout + 0.5,
        )

    async def close(self, *, linger: bool = True) -> None:
        """Close on every path; a peer that does not finish the TLS shutdown is cut off.
        linger=False closes the TCP connection at once after what was written is flushed
        (no TLS close_notify exchange to wait for): for probe connections after QUIT."""
        try:
            if not linger and self.raw is not None and not self.dead:
                self.transport = None
                self.dead = True
                self.raw.close()
                await asyncio.sleep(0)
                return
            await self._close()
        finally:
            leased, self._leased = self._leased, []
            for offer, ctx in leased:
                release_context(offer, ctx)

    async def _close(self) -> None:
        transport, self.transport = self.transport, None
        if transport is not None and not transport.is_closing():
            transport.close()
            if self.proto is not None and not self.proto.lost.done():
                try:
                    await asyncio.wait_for(asyncio.shield(self.proto.lost), min(1.0, self.timeout))
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    pass
        self._abort()
        # abort() delivers connection_lost on the next loop turn; let it run so the TLS
        # layer marks its transport closed even when the caller's loop ends right after.
        await asyncio.sleep(0)


def smtp_connection(where: Where, options: Options, transcript: Transcript) -> SmtpConnection:
    return SmtpConnection(where, options, transcript)


async def prepare_tls(
    conn: SmtpConnection, ehlo_name: str, *, implicit: bool, pipeline_noop: bool = False
) -> AsyncIterator[Event]:
    """Connect and, unless TLS is implicit, go as far as a 220 to STARTTLS.

    Afterwards `conn.stopped_at` is None when the handshake can start."""
    async for event in conn.connect():
        yield event
    if conn.stopped_at is not None or implicit:
        return
    async for event in conn.greeting():
        yield event
    if conn.stopped_at is not None:
        return
    async for event in conn.ehlo(ehlo_name):
        yield event
    if conn.stopped_at is not None or conn.ehlo_reply is None:
        return
    conn.starttls = "STARTTLS" in conn.ehlo_reply.keywords
    if not conn.starttls:
        conn._stop("starttls", conn.ehlo_index)
        async for event in conn.quit():
            yield event
        return
    async for event in conn.starttls_command(pipeline_noop=pipeline_noop):
        yield event


# --------------------------------------------------------------------------- the session


# This host cannot send to that address family at all: nothing left the machine, so the
# server was not tested (typical: a jump host without IPv6 and an MX with AAAA records).
_NO_ROUTE_HERE = {errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT}
_NO_RESOURCES_HERE = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def classify_connect_error(exc: OSError, address: str, port: int) -> tuple[str, str]:
    """(connect_error code, transcript reason) for a failed TCP connect. "no-route-here" is
    an IPv6 address this host has no route to: a limit of where mxlens runs, not a finding
    about the server, since senders with IPv6 reach it and others use the IPv4 addresses."""
    if exc.errno in _NO_ROUTE_HERE and ":" in address:
        return "no-route-here", (
            f"this host has no IPv6 route to {address} ({exc.strerror or exc}): not tested from here"
        )
    if exc.errno in _NO_RESOURCES_HERE:
        # Out of descriptors or buffers here: nothing was learnt about the server.
        return "no-resources-here", (
            f"this host is out of resources ({exc.strerror or exc}): {address} not tested"
        )
    return "unreachable", f"cannot connect to {address} port {port}: {exc.strerror or exc}"


def _is_rate_limit(reply: Reply) -> bool:
    return reply.code == 421 or bool(_RATE_WORDS.search(reply.text))


def _first_line(reply: Reply) -> str:
    return reply.lines[0] if reply.lines else ""
