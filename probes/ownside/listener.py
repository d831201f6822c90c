"""`mxlens listen`: receive test mail from the user's own sending server and judge its TLS.

A minimal receiving SMTP server. It offers STARTTLS, asks for a client certificate without
requiring one, and records per session the peer, the EHLO name, the ClientHello offer, what
was negotiated, the client chain exactly as presented and the timings. The chain is validated
by the same code that validates a server's chain (checks/chain.py). DATA is read, counted and
thrown away: the 250 says so. Nothing is relayed or stored.

The TLS context is built in identity.py (why pyOpenSSL: see there), and the bytes move
through channel.py (TLS over memory BIOs, so the raw ClientHello is visible).

Caps: MAX_SESSIONS at a time (more get 421), SESSION_LIMIT seconds per session, MAX_MESSAGE
bytes of DATA (more gets 552), MAX_LINE bytes per command line, MAX_COMMANDS per session.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import warnings
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from cryptography import x509

from probes.checks.certificates import cert_info, iso_utc
from probes.checks.chain import validate_chain
from probes.model.errors import CheckError
from probes.model.events import (
    CertInfo,
    ChainReceived,
    ChainValidated,
    Event,
    Finding,
    FindingRaised,
    SessionFinished,
    SessionStarted,
    TlsNegotiated,
    TranscriptLine,
    Where,
)
from probes.model.findings import exit_code, raise_finding, sort_findings, worst
from probes.model.names import expected_name_matches
from probes.model.options import Options
from probes.ownside.channel import MAX_LINE, Channel, Closed
from probes.ownside.hello import (
    HelloOffer,
    handshake_messages,
    negotiated_group,
    parse_client_hello,
)
from probes.ownside.identity import build_context
from probes.ownside.judge import ReceiverProfile, grade_for, verdict
from probes.ownside.report import finding_json

MAX_SESSIONS = 4
SESSION_LIMIT = 300.0
MAX_MESSAGE = 10 * 1024 * 1024
MAX_DATA_LINE = 1024 * 1024
MAX_COMMANDS = 200
MAX_RECIPIENTS = 100
SCHEMA = "mxlens/listen/1"


@dataclass(frozen=True)
class ListenOptions:
    address: str = "127.0.0.1"
    port: int = 2525
    hostname: str = "mxlens.invalid"
    cert_file: str | None = None  # our own server certificate (PEM chain); None: a throwaway one
    key_file: str | None = None
    once: bool = False
    receiver: ReceiverProfile | None = None
    # The tenant's accepted domains (--accepted-domain), for the OnPremises connector rule.
    accepted_domains: tuple[str, ...] = ()
    # Options carries the trust store (--ca-file / --trust), --expect-name and --timeout.
    options: Options = field(default_factory=Options)


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class ListenReady:
    address: str
    port: int
    hostname: str
    certificate: CertInfo  # what we present to the sender


@dataclass(frozen=True)
class Negotiated:
    version: str
    cipher: str
    bits: int | None
    group: str | None


@dataclass
class ListenSession:
    """Everything one sender did, and what it means."""

    number: int
    where: Where
    peer: str
    peer_port: int
    started: str
    ehlo: list[str] = field(default_factory=list)
    starttls: bool = False
    offer: HelloOffer | None = None
    negotiated: Negotiated | None = None
    handshake_error: str | None = None
    chain: tuple[CertInfo, ...] = ()
    validation: ChainValidated | None = None
    mail_from: str | None = None
    rcpt_to: list[str] = field(default_factory=list)
    messages: list[int] = field(default_factory=list)  # sizes of the discarded messages
    transcript: list[TranscriptLine] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    outcome: str = "open"
    findings: list[Finding] = field(default_factory=list)
    verdict: str = ""

    def exit_code(self) -> int:
        return exit_code(self.findings)

    def to_json(
        self, receiver: ReceiverProfile | None, version: str, expect_name: str | None = None
    ) -> dict[str, Any]:
        from probes.ownside.report import cert_json, validation_json

        return {
            "schema": SCHEMA,
            "version": version,
            "session": self.number,
            "peer": {"address": self.peer, "port": self.peer_port},
            "started": self.started,
            "ehlo": self.ehlo[-1] if self.ehlo else None,
            "ehlo_all": list(self.ehlo),
            "starttls": self.starttls,
            "client_hello": None
            if self.offer is None
            else {
                "versions": list(self.offer.versions),
                "suites": list(self.offer.suites),
                "groups": list(self.offer.groups),
                "sni": self.offer.sni,
                "signature_algorithms": self.offer.signature_algorithms,
                "alpn": list(self.offer.alpn),
            },
            "tls": None
            if self.negotiated is None
            else {
                "version": self.negotiated.version,
                "cipher": self.negotiated.cipher,
                "bits": self.negotiated.bits,
                "group": self.negotiated.group,
            },
            "handshake_error": self.handshake_error,
            "client_certificate": cert_json(self.chain[0], "sent") if self.chain else None,
            "chain": [cert_json(c, "sent") for c in self.chain],
            "validation": validation_json(self.validation),
            "mail_from": self.mail_from,
            "rcpt_to": list(self.rcpt_to),
            "messages_discarded": list(self.messages),
            "transcript": [
                {"t_ms": line.t_ms, "dir": line.dir, "text": line.text} for line in self.transcript
            ],
            "timings_ms": dict(self.timings),
            "outcome": self.outcome,
            "connector": None
            if receiver is None
            else {"name": receiver.name, "title": receiver.title, "source": receiver.source},
            "expect_name": expect_name,
            "verdict": self.verdict,
            "worst": worst(self.findings),
            "exit": self.exit_code(),
            "findings": [finding_json(f) for f in sort_findings(self.findings)],
        }


@dataclass(frozen=True)
class ListenSessionDone:
    session: ListenSession


ListenEvent = ListenReady | Event | ListenSessionDone


# --------------------------------------------------------------------------- the session


class _Session:
    def __init__(
        self,
        listener: Listener,
        number: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.listener = listener
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.t0 = time.monotonic()
        self.where = Where(f"session {number}", str(peer[0]), int(peer[1]))
        self.rec = ListenSession(
            number=number,
            where=self.where,
            peer=str(peer[0]),
            peer_port=int(peer[1]),
            started=iso_utc(dt.datetime.now(dt.timezone.utc)),
        )
        self.chan = Channel(reader, writer, listener.opts.options.timeout)
        self.writer = writer

    def ms(self) -> float:
        return round((time.monotonic() - self.t0) * 1000, 1)

    def emit(self, event: Event) -> None:
        self.listener.put(event)

    def note(self, direction: Literal["S", "C", "TLS", "!"], text: str) -> None:
        line = TranscriptLine(self.where, "main", self.ms(), direction, text)
        self.rec.transcript.append(line)
        self.emit(line)

    async def reply(self, text: str) -> None:
        lines = text.split("\n")
        for line in lines:
            self.note("S", line)
        wire = "".join(
            f"{line[:3]}{'-' if i < len(lines) - 1 else ' '}{line[4:]}\r\n"
            for i, line in enumerate(lines)
        )
        await self.chan.send(wire.encode("utf-8", "replace"))

    async def run(self) -> ListenSession:
        self.emit(SessionStarted(self.where, "main"))
        hostname = self.listener.opts.hostname
        try:
            await asyncio.wait_for(self._dialogue(hostname), SESSION_LIMIT)
        except asyncio.TimeoutError:
            self.note("!", f"session cut after {SESSION_LIMIT:.0f} s (mxlens listen's limit)")
            self.rec.outcome = "time limit"
        except Closed as exc:
            self.note("!", str(exc))
            if self.rec.outcome == "open":
                self.rec.outcome = "closed"
        except Exception as exc:  # noqa: BLE001 - one sender's oddity must not stop the listener
            self.note("!", f"session ended by an internal error: {type(exc).__name__}: {exc}")
            self.rec.outcome = "internal error"
        finally:
            self.rec.timings["total"] = self.ms()
            with contextlib.suppress(Exception):
                self.writer.close()
        await self._judge()
        self.emit(SessionFinished(self.where, "main", self.rec.outcome, True))
        return self.rec

    async def _dialogue(self, hostname: str) -> None:
        await self.reply(
            f"220 {hostname} ESMTP mxlens listen: test receiver, messages are discarded"
        )
        commands = 0
        while True:
            raw = await self.chan.line()
            commands += 1
            text = raw.decode("utf-8", "replace")
            verb = text.split(" ", 1)[0].upper()
            self.note("C", text)
            if commands > MAX_COMMANDS:
                await self.reply("421 4.7.0 too many commands, closing")
                self.rec.outcome = "command limit"
                return
            if verb in ("EHLO", "HELO"):
                name = text[5:].strip()
                self.rec.ehlo.append(name)
                self.rec.timings.setdefault("ehlo", self.ms())
                if verb == "HELO":
                    await self.reply(f"250 {hostname}")
                    continue
                lines = [f"250 {hostname} greets {name or 'you'}", f"250 SIZE {MAX_MESSAGE}"]
                lines += ["250 8BITMIME", "250 ENHANCEDSTATUSCODES"]
                if not self.rec.starttls:
                    lines.append("250 STARTTLS")
                await self.reply("\n".join(lines))
            elif verb == "STARTTLS":
                if self.rec.starttls:
                    await self.reply("503 5.5.1 TLS already active")
                    continue
                await self.reply("220 2.0.0 Ready to start TLS")
                if self.chan.buffer:
                    # RFC 3207 5: anything pipelined after STARTTLS must be thrown away.
                    self.note("!", f"discarded {len(self.chan.buffer)} bytes sent before TLS")
                    self.chan.buffer = b""
                self.rec.starttls = True
                if not await self._handshake():
                    self.rec.outcome = "handshake"
                    return
            elif verb == "MAIL":
                self.rec.mail_from = text[10:].strip() if len(text) > 10 else text
                self.rec.rcpt_to = []
                await self.reply("250 2.1.0 sender OK")
            elif verb == "RCPT":
                if len(self.rec.rcpt_to) >= MAX_RECIPIENTS:
                    await self.reply("452 4.5.3 too many recipients")
                    continue
                self.rec.rcpt_to.append(text[8:].strip() if len(text) > 8 else text)
                await self.reply("250 2.1.5 recipient OK")
            elif verb == "DATA":
                if not self.rec.rcpt_to:
                    await self.reply("503 5.5.1 RCPT first")
                    continue
                await self.reply("354 send the message, end with <CRLF>.<CRLF>")
                self.rec.timings.setdefault("data", self.ms())
                size = await self._swallow()
                if size > MAX_MESSAGE:
                    await self.reply(f"552 5.3.4 message larger than {MAX_MESSAGE} bytes")
                    continue
                self.rec.messages.append(size)
                await self.reply(
                    f"250 2.0.0 message discarded by mxlens listen ({size} bytes): "
                    "not delivered, not stored"
                )
            elif verb == "RSET":
                self.rec.mail_from = None
                await self.reply("250 2.0.0 OK")
            elif verb == "NOOP":
                await self.reply("250 2.0.0 OK")
            elif verb == "VRFY":
                await self.reply("252 2.1.5 cannot verify, try RCPT")
            elif verb == "QUIT":
                await self.reply("221 2.0.0 bye")
                self.rec.outcome = "ok"
                return
            else:
                await self.reply("502 5.5.2 command not recognised")

    async def _swallow(self) -> int:
        """Read the message up to the final dot, counting and discarding it."""
        size = 0
        while True:
            # Message lines may exceed RFC 5321's 1000 octets in the wild; a cap still bounds
            # the buffer.
            line = await self.chan.line(MAX_DATA_LINE)
            if line == b".":
                self.note("C", f"(message of {size} bytes, discarded)")
                return size
            size += len(line) + 2

    async def _handshake(self) -> bool:
        ctx = self.listener.context
        started = self.ms()
        try:
            inbound, outbound = await self.chan.handshake(ctx)
        except Closed as exc:
            self.rec.handshake_error = str(exc)
            self._offer_from(self.chan.inbound)
            self.note("TLS", f"handshake failed: {exc}")
            return False
        except Exception as exc:  # noqa: BLE001 - any OpenSSL error ends the handshake
            self.rec.handshake_error = _ssl_error_text(exc)
            self._offer_from(self.chan.inbound)
            self.note("TLS", f"handshake failed: {self.rec.handshake_error}")
            return False
        self.rec.timings["handshake"] = round(self.ms() - started, 1)
        self._offer_from(inbound)
        tls = self.chan.tls
        version = str(tls.get_protocol_version_name())
        cipher = str(tls.get_cipher_name())
        bits = tls.get_cipher_bits()
        group = negotiated_group(outbound, version, cipher)
        self.rec.negotiated = Negotiated(version, cipher, bits, group)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            leaf = tls.get_peer_certificate(as_cryptography=True)
            rest = tls.get_peer_cert_chain(as_cryptography=True) or []
        certs: list[x509.Certificate] = [leaf] if leaf is not None else []
        # On the server side OpenSSL's peer chain leaves the leaf out; some builds keep it.
        for cert in rest:
            if leaf is None or cert != leaf:
                certs.append(cert)
        self.rec.chain = tuple(cert_info(c) for c in certs)
        offer = self.rec.offer
        if offer is not None:
            self.note(
                "TLS",
                f"<- ClientHello: {', '.join(offer.versions)}; {len(offer.suites)} suites; "
                f"groups {', '.join(offer.groups[:6]) or 'none'}; SNI {offer.sni or 'none'}",
            )
        self.note("TLS", f"-> {version} {cipher}" + (f" ({group})" if group else ""))
        if self.rec.chain:
            who = self.rec.chain[0].subject
            self.note("TLS", f"<- client certificate {who} (+{len(self.rec.chain) - 1} more)")
        else:
            self.note("TLS", "<- no client certificate")
        self.emit(
            TlsNegotiated(
                self.where,
                version,
                cipher,
                bits,
                version == "TLSv1.3" or "DHE" in cipher,
                group,
                (),
                sni=offer.sni if offer is not None else None,
            )
        )
        if self.rec.chain:
            self.emit(ChainReceived(self.where, self.rec.chain))
        return True

    def _outside_accepted(self, accepted: tuple[str, ...]) -> str | None:
        """Why the 2023-11 OnPremises rule refuses this sender, or None when it passes: the
        certificate's domain (a SAN, else the CN) or the MAIL FROM domain must be accepted."""
        leaf = self.rec.chain[0] if self.rec.chain else None
        names = [n for n in leaf.san if not n.startswith("IP:")] if leaf else []
        if leaf is not None and not names and leaf.common_name:
            names = [leaf.common_name]
        sender = (self.rec.mail_from or "").split(" ", 1)[0].strip("<>")
        domains = [n.removeprefix("*.") for n in names]
        if "@" in sender:
            domains.append(sender.rpartition("@")[2])
        if any(in_domains(d, accepted) for d in domains):
            return None
        shown = ", ".join(names[:4]) or "no certificate"
        return (
            f"neither the certificate ({shown}) nor MAIL FROM {sender or '(none)'} is in an "
            f"accepted domain ({', '.join(accepted)})"
        )

    def _offer_from(self, inbound: bytes) -> None:
        messages, _ = handshake_messages(inbound)
        for msg in messages:
            offer = parse_client_hello(msg)
            if offer is not None:
                self.rec.offer = offer
                return

    async def _judge(self) -> None:
        """Validate the client chain as a server chain is validated, then the receiver's view."""
        opts = self.listener.opts
        found: list[Finding] = []
        w = self.where
        if self.rec.handshake_error is not None:
            found.append(
                raise_finding(
                    "listen.handshake_failed",
                    w,
                    f"the handshake with {self.rec.peer} failed: {self.rec.handshake_error}",
                )
            )
        elif not self.rec.starttls and (self.rec.messages or self.rec.mail_from):
            found.append(
                raise_finding(
                    "listen.no_tls",
                    w,
                    f"{self.rec.peer} sent MAIL in clear text although STARTTLS was offered",
                )
            )
        if self.rec.starttls and self.rec.handshake_error is None and not self.rec.chain:
            found.append(
                raise_finding(
                    "listen.no_client_cert",
                    w,
                    f"{self.rec.peer} presented no client certificate when asked",
                )
            )
        if self.rec.chain:
            # The sender's name is judged below with a finding of its own (what an inbound
            # connector checks), not as a sending connector's TlsDomain.
            no_name = replace(opts.options, expect_name=None)
            async for event in validate_chain(
                w,
                list(self.rec.chain),
                no_name,
                names=[],
                fetcher=self.listener.fetcher,
                roots=self.listener.roots,
                leaf_role="the client certificate",
                supplier="the sender",
                server_eku=False,
            ):
                if isinstance(event, ChainValidated):
                    self.rec.validation = event
                    self.emit(event)
                elif isinstance(event, FindingRaised):
                    found.append(event.finding)
            leaf = self.rec.chain[0]
            if leaf.eku and not {"clientAuth", "anyExtendedKeyUsage"} & set(leaf.eku):
                found.append(
                    raise_finding(
                        "cert.not_client_auth",
                        w,
                        f"the client certificate's extended key usage is {', '.join(leaf.eku)}, "
                        "without clientAuth",
                        evidence=("cert:0",),
                    )
                )
            expect = opts.options.expect_name
            if expect and not expected_name_matches(leaf.san, leaf.common_name, expect):
                names = ", ".join(leaf.san[:6]) or f"CN {leaf.common_name}"
                found.append(
                    raise_finding(
                        "listen.sender_name_mismatch",
                        w,
                        f"the expected sender name {expect} is not in the client certificate "
                        f"(it names {names})",
                        evidence=("cert:0",),
                    )
                )
        if opts.accepted_domains and (self.rec.messages or self.rec.mail_from):
            problem = self._outside_accepted(opts.accepted_domains)
            if problem is not None:
                found.append(raise_finding("listen.not_accepted_domain", w, problem))
        self.rec.findings = grade_for(found, opts.receiver)
        self.rec.verdict = verdict(self.rec.findings, opts.receiver)
        for finding in self.rec.findings:
            self.emit(FindingRaised(finding))


def in_domains(name: str, domains: tuple[str, ...]) -> bool:
    """Is name one of domains or below one of them (mail.contoso.com in contoso.com)?"""
    from probes.model.names import normalize

    want = normalize(name)
    if want is None:
        return False
    for domain in domains:
        d = normalize(domain)
        if d is not None and (want == d or want.endswith("." + d)):
            return True
    return False


def _ssl_error_text(exc: BaseException) -> str:
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], list) and args[0]:
        parts = [str(item[-1]) for item in args[0] if isinstance(item, tuple)]
        if parts:
            return "; ".join(parts)
    return str(exc) or type(exc).__name__


# --------------------------------------------------------------------------- the server


class Listener:
    """The receiving server. `events()` streams what happens; stop() ends it."""

    def __init__(self, opts: ListenOptions) -> None:
        from probes.net.dns import Resolver
        from probes.net.http import Fetcher
        from probes.net.trust import load_roots

        self.opts = opts
        self.context, self.certificate = build_context(opts)
        self.roots = load_roots(opts.options)
        resolver = Resolver(opts.options.resolver, timeout=opts.options.timeout)
        self.fetcher = Fetcher(resolver, opts.options, self.roots)
        self.queue: asyncio.Queue[ListenEvent | None] = asyncio.Queue()
        self.server: asyncio.base_events.Server | None = None
        self.active = 0
        self.count = 0
        self.accepting = True
        self.tasks: set[asyncio.Task[None]] = set()

    def put(self, event: ListenEvent | None) -> None:
        self.queue.put_nowait(event)

    async def start(self) -> ListenReady:
        try:
            self.server = await asyncio.start_server(
                self._accept, self.opts.address, self.opts.port, limit=MAX_LINE * 4
            )
        except OSError as exc:
            raise CheckError(
                f"cannot listen on {self.opts.address}:{self.opts.port}: {exc.strerror or exc}"
            ) from None
        sock = self.server.sockets[0].getsockname()
        return ListenReady(str(sock[0]), int(sock[1]), self.opts.hostname, self.certificate)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.accepting or self.active >= MAX_SESSIONS:
            with contextlib.suppress(Exception):
                writer.write(b"421 4.3.2 mxlens listen is busy, try again later\r\n")
                await writer.drain()
                writer.close()
            return
        self.active += 1
        self.count += 1
        if self.opts.once:
            self.accepting = False
        session = _Session(self, self.count, reader, writer)
        try:
            record = await session.run()
            self.put(ListenSessionDone(record))
        finally:
            self.active -= 1
            if self.opts.once:
                self.put(None)

    async def stop(self) -> None:
        self.accepting = False
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)
        await self.fetcher.aclose()


async def listen(opts: ListenOptions) -> AsyncGenerator[ListenEvent, None]:
    """Run the listener: first a ListenReady, then every session's events and a
    ListenSessionDone per session. With opts.once it ends after the first session; otherwise
    when the caller stops iterating (Ctrl+C, the screen closes)."""
    listener = Listener(opts)
    ready = await listener.start()
    try:
        yield ready
        while True:
            event = await listener.queue.get()
            if event is None:
                return
            yield event
    finally:
        await listener.stop()
