"""The side probes: extra connections that learn what the main session cannot.

The TLS version sweep, the TLS 1.2 cipher probe and the STARTTLS injection test are SMTP
sessions of their own; they build on net/smtp.py and net/tls.py and never the other way round.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass

from probes.checks.session import throttle_findings
from probes.model.events import (
    Event,
    FindingRaised,
    SessionFinished,
    SessionPurpose,
    SessionStarted,
    TlsVersionsProbed,
    Where,
)
from probes.model.findings import raise_finding
from probes.model.options import Options
from probes.net.smtp import TlsState, Transcript, prepare_tls, smtp_connection
from probes.net.tls import (
    TLS_VERSIONS,
    HandshakeRecorder,
    build_client_context,
    local_version_support,
    sni_for,
)

# --------------------------------------------------------------------------- extra probes


@dataclass(frozen=True)
class _Attempt:
    """One connection of an extra probe: the one TLS version and the suites it offers."""

    label: str  # names it in a throttle finding: "<what>, <label>"
    offer: str  # the transcript announces it as "connection N: <offer>"
    version: str
    ciphers: str | None = None  # None: build_client_context's own (all suites)
    skip: str | None = None  # this host cannot offer it: the note written instead


@dataclass(frozen=True)
class _Handshake:
    """How one attempt's handshake ended, yielded while its connection is still open so that
    what the caller makes of it comes before the QUIT in the transcript."""

    attempt: _Attempt
    accepted: bool | None  # None: not tested (no ClientHello went out, or it timed out)
    tls: TlsState | None
    tls_index: int  # the transcript line of the handshake, for evidence


@dataclass(frozen=True)
class _Finished:
    """The last item of `_probe_handshakes`: what SessionFinished needs."""

    outcome: str
    starttls: bool | None
    connections: int


async def _probe_handshakes(
    where: Where,
    options: Options,
    transcript: Transcript,
    ehlo_name: str,
    what: str,
    attempts: Sequence[_Attempt],
) -> AsyncGenerator[Event | _Handshake | _Finished, None]:
    """One connection per attempt, one after the other, up to the handshake.

    Yields the connections' events, a _Handshake per attempt made, and a _Finished last.
    A dialogue that breaks before the handshake ends the run (with smtp.rate_limited when
    throttled): later connections would meet the same."""

    outcome = "ok"
    starttls: bool | None = None
    connections = 0
    for number, attempt in enumerate(attempts, start=1):
        if attempt.skip is not None:
            yield transcript.line("!", attempt.skip)
            continue
        yield transcript.line("!", f"connection {number}: {attempt.offer}")
        connections += 1
        conn = smtp_connection(where, options, transcript)
        try:
            async for event in prepare_tls(conn, ehlo_name, implicit=options.implicit_tls):
                yield event
            if conn.stopped_at is not None:
                # The dialogue broke before any handshake: nothing to learn from more tries.
                outcome = conn.stopped_at
                starttls = conn.starttls if starttls is None else starttls
                for finding in throttle_findings(conn, where, f"{what}, {attempt.label}"):
                    yield finding
                break
            starttls = conn.starttls if not options.implicit_tls else None
            recorder = HandshakeRecorder(transcript.t_ms)
            ctx = build_client_context(
                version=attempt.version, recorder=recorder, ciphers=attempt.ciphers
            )
            async for event in conn.handshake(ctx, recorder, sni_for(where.host)):
                yield event
            accepted: bool | None
            if conn.tls is not None:
                accepted = True
            elif not recorder.client_hello_sent or conn.tls_timed_out:
                accepted = None
            else:
                accepted = False
            yield _Handshake(attempt, accepted, conn.tls, conn.tls_index)
            if conn.tls is not None:
                async for event in conn.quit():
                    yield event
        finally:
            await conn.close()
    yield _Finished(outcome, starttls, connections)


async def tls_version_sweep(
    where: Where, options: Options, *, ehlo_name: str
) -> AsyncIterator[Event]:
    """One connection per protocol version (min = max), one after the other.

    Yields SessionStarted, the transcript of every connection (purpose "tls-versions"),
    TlsVersionsProbed, findings tls.legacy_accepted / tls.no_tls13, then SessionFinished.
    A version this host cannot offer, or one that could not be tried (the dialogue broke
    before the handshake, or the handshake timed out), is None rather than False.
    """

    purpose: SessionPurpose = "tls-versions"
    yield SessionStarted(where, purpose)
    transcript = Transcript(where, purpose)
    attempts = [
        _Attempt(
            version,
            f"offering {version} only",
            version,
            skip=None
            if local_version_support(version)
            else f"{version}: this host's OpenSSL cannot offer it; not tested",
        )
        for version in TLS_VERSIONS
    ]
    results: dict[str, bool | None] = {}
    evidence: dict[str, int] = {}
    finished = _Finished("ok", None, 0)
    probe = _probe_handshakes(where, options, transcript, ehlo_name, "TLS version sweep", attempts)
    async with aclosing(probe):
        async for item in probe:
            if isinstance(item, _Handshake):
                results[item.attempt.version] = item.accepted
                if item.accepted is not None:
                    evidence[item.attempt.version] = item.tls_index
            elif isinstance(item, _Finished):
                finished = item
            else:
                yield item
    accepted = tuple((v, results.get(v)) for v in TLS_VERSIONS)
    yield TlsVersionsProbed(where, accepted)
    legacy = [v for v in ("TLSv1", "TLSv1.1") if results.get(v) is True]
    modern = [v for v in ("TLSv1.2", "TLSv1.3") if results.get(v) is True]
    if legacy and modern:
        yield FindingRaised(
            raise_finding(
                "tls.legacy_accepted",
                where,
                f"{' and '.join(legacy)} still accepted besides {' and '.join(modern)}",
                evidence=(f"transcript:{evidence[legacy[0]]}",),
            )
        )
    if results.get("TLSv1.3") is False and results.get("TLSv1.2") is True:
        yield FindingRaised(
            raise_finding(
                "tls.no_tls13",
                where,
                "TLSv1.3 refused; best version accepted is TLSv1.2",
                evidence=(f"transcript:{evidence['TLSv1.3']}",),
            )
        )
    yield SessionFinished(
        where,
        purpose,
        finished.outcome,
        finished.starttls,
        connections=max(finished.connections, 1),
    )


# TLS 1.2 suites without forward secrecy: static RSA key exchange only. NULL and anonymous
# suites are left out so that this probe answers one question; the weak probe asks the other.
NON_FS_CIPHERS = "kRSA:!eNULL:!aNULL:!PSK:!SRP:@SECLEVEL=0"
# Weak TLS 1.2 suite families (label, OpenSSL cipher-string term). Anonymous suites that do
# encrypt (ADH-AES..., AECDH-AES...) are deliberately not probed: Postfix and Exim enable them
# by default for opportunistic TLS, where the server is unauthenticated anyway, and a sender
# that verifies certificates never offers them, so flagging them would warn on every stock
# Postfix. (Anonymous NULL suites are covered by eNULL.)
WEAK_FAMILIES: tuple[tuple[str, str], ...] = (
    ("NULL", "eNULL"),
    ("EXPORT", "EXPORT"),
    ("RC4", "RC4"),
    ("3DES", "3DES"),
    ("DES", "DES"),
)


def _tls12_suites(cipher_string: str) -> list[str]:
    """The TLS <= 1.2 suites this OpenSSL offers for a cipher string (empty: none)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.set_ciphers(cipher_string)
    except ssl.SSLError:
        return []
    return [c["name"] for c in ctx.get_ciphers() if c.get("protocol") != "TLSv1.3"]


def weak_families_available() -> tuple[list[str], list[str]]:
    """(families this host can offer, families it cannot). On OpenSSL 3.0 without the legacy
    provider only NULL is offerable: RC4, 3DES, DES and EXPORT are gone even at
    @SECLEVEL=0, so a server that accepts only those cannot be detected from this host."""
    can: list[str] = []
    cannot: list[str] = []
    for label, term in WEAK_FAMILIES:
        suites = _tls12_suites(f"{term}:!PSK:!SRP:@SECLEVEL=0")
        (can if suites else cannot).append(label)
    return can, cannot


def weak_cipher_string() -> str | None:
    """The cipher string offering every weak family this host has, or None if none."""
    can, _ = weak_families_available()
    if not can:
        return None
    terms = [term for label, term in WEAK_FAMILIES if label in can]
    return ":".join(terms) + ":!PSK:!SRP:@SECLEVEL=0"


async def tls12_cipher_probe(
    where: Where,
    options: Options,
    *,
    ehlo_name: str,
    non_fs: bool = True,
    weak: bool = True,
) -> AsyncIterator[Event]:
    """Does the server still accept TLS 1.2 suites it should not? One connection per question,
    one after the other, each offering TLS 1.2 only and only the suites in question:

    - non_fs: static-RSA (kRSA) suites -> tls.non_fs_accepted when one is accepted;
    - weak: NULL / EXPORT / RC4 / 3DES / DES, as far as this OpenSSL can offer them
      (weak_families_available) -> tls.weak_suite_accepted.

    The caller asks only what the main session did not already answer (a negotiated suite
    without forward secrecy is tls.no_forward_secrecy; a weak one is tls.weak_cipher).
    Yields SessionStarted, the transcript (purpose "cipher-probe"), findings, SessionFinished.
    """

    purpose: SessionPurpose = "cipher-probe"
    yield SessionStarted(where, purpose)
    transcript = Transcript(where, purpose)
    questions: list[tuple[str, str, str]] = []
    if non_fs and _tls12_suites(NON_FS_CIPHERS):
        questions.append(("static-RSA (no forward secrecy)", NON_FS_CIPHERS, "tls.non_fs_accepted"))
    elif non_fs:
        yield transcript.line("!", "this host's OpenSSL cannot offer static-RSA suites; not tested")
    if weak:
        can, cannot = weak_families_available()
        weak_string = weak_cipher_string()
        if cannot:
            yield transcript.line(
                "!",
                f"this host's OpenSSL cannot offer {', '.join(cannot)} suites; "
                "a server accepting only those is not detected",
            )
        if weak_string is not None:
            questions.append((f"weak ({', '.join(can)})", weak_string, "tls.weak_suite_accepted"))
    attempts = [
        _Attempt(label, f"TLSv1.2 only, offering only {label} suites", "TLSv1.2", ciphers)
        for label, ciphers, _ in questions
    ]
    finding_for = {label: fid for label, _, fid in questions}
    finished = _Finished("ok", None, 0)
    probe = _probe_handshakes(where, options, transcript, ehlo_name, "cipher probe", attempts)
    async with aclosing(probe):
        async for item in probe:
            if isinstance(item, _Finished):
                finished = item
            elif not isinstance(item, _Handshake):
                yield item
            elif item.tls is not None:
                label = item.attempt.label
                yield FindingRaised(
                    raise_finding(
                        finding_for[label],
                        where,
                        f"accepted {item.tls.cipher} ({item.tls.version}) when offered only "
                        f"{label} suites",
                        evidence=(f"transcript:{item.tls_index}",),
                    )
                )
            elif item.accepted is None:
                yield transcript.line("!", f"{item.attempt.label} suites: could not be tested")
            else:
                yield transcript.line(
                    "!", f"{item.attempt.label} suites refused, as they should be"
                )
    yield SessionFinished(
        where, purpose, finished.outcome, finished.starttls, connections=finished.connections
    )


async def starttls_injection_test(
    where: Where, options: Options, *, ehlo_name: str
) -> AsyncIterator[Event]:
    """Does the server execute a command pipelined with STARTTLS after TLS starts?

    CVE-2011-0411 class: "STARTTLS\\r\\nNOOP\\r\\n" goes out in one write; a server that
    keeps the NOOP buffered across the upgrade answers it inside TLS, so a man in the middle
    could inject commands into the encrypted session.
    """

    purpose: SessionPurpose = "injection"
    yield SessionStarted(where, purpose)
    transcript = Transcript(where, purpose)
    conn = smtp_connection(where, options, transcript)
    outcome = "ok"
    try:
        async for event in prepare_tls(conn, ehlo_name, implicit=False, pipeline_noop=True):
            yield event
        if conn.stopped_at is not None:
            outcome = conn.stopped_at
            for finding in throttle_findings(conn, where, "STARTTLS injection test"):
                yield finding
        else:
            # Anything still buffered arrived in clear text before TLS: not what we test.
            for event in conn.discard_plaintext("before the TLS handshake"):
                yield event
            recorder = HandshakeRecorder(transcript.t_ms)
            ctx = build_client_context(recorder=recorder)
            async for event in conn.handshake(ctx, recorder, sni_for(where.host)):
                yield event
            if conn.tls is None:
                outcome = "handshake"
            else:
                # No idle wait for a NOOP reply that should never come: send QUIT and read
                # ONE reply. A vulnerable server queued the 250 for the pipelined NOOP before
                # it read QUIT, so its first reply inside TLS is 250; a correct server never
                # saw the NOOP and answers 221. One round trip either way.
                for line in conn.send("QUIT"):
                    yield line
                async for event in conn.read_reply("first reply inside TLS", quiet=True):
                    yield event
                reply = conn.reply
                if reply is not None and reply.code != 221:
                    yield FindingRaised(
                        raise_finding(
                            "tls.plaintext_injection",
                            where,
                            "NOOP sent in clear text with STARTTLS was answered inside TLS: "
                            f"{reply.lines[0][:80] if reply.lines else ''}",
                            evidence=(f"transcript:{conn.reply_index}",),
                        )
                    )
                    # The QUIT's own 221 follows; a missing one proves nothing.
                    async for event in conn.read_reply(
                        "QUIT reply", timeout=min(2.0, options.timeout), quiet=True
                    ):
                        yield event
                elif reply is not None:
                    yield transcript.line(
                        "!",
                        "the first reply inside TLS answers QUIT, not the pipelined NOOP: "
                        "the server discarded the clear-text command (not vulnerable)",
                    )
                else:
                    yield transcript.line(
                        "!",
                        f"no reply inside TLS ({conn.failure or 'nothing'}): "
                        "the injection test is inconclusive",
                    )
    finally:
        await conn.close()
    yield SessionFinished(where, purpose, outcome, conn.starttls)
