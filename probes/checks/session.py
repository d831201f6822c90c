"""The main SMTP session: the dialogue up to and through STARTTLS, and the findings it raises."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

from probes.model.events import (
    ChainReceived,
    Event,
    FindingRaised,
    SessionFinished,
    SessionPurpose,
    SessionStarted,
    TlsNegotiated,
    Where,
)
from probes.model.findings import raise_finding
from probes.model.options import Options
from probes.net.smtp import (
    MAX_REPLY_LINES,
    MAX_REPLY_OCTETS,
    SmtpConnection,
    Transcript,
    _first_line,
    _is_rate_limit,
    prepare_tls,
    smtp_connection,
)
from probes.net.tls import (
    HandshakeRecorder,
    TlsOffer,
    has_forward_secrecy,
    sni_for,
    version_below_12,
    weak_cipher_reason,
)


def _stop_findings(conn: SmtpConnection, where: Where) -> Iterator[FindingRaised]:
    """The finding that explains where the dialogue stopped."""
    step = conn.stopped_at
    ev = (f"transcript:{conn.stop_index}",)

    def make(fid: str, summary: str) -> FindingRaised:
        return FindingRaised(raise_finding(fid, where, summary, evidence=ev))

    if step == "connect":
        if conn.connect_error == "no-route-here":
            yield make(
                "smtp.not_tested_from_here",
                f"{conn.address} is IPv6 and this host has no IPv6 route: not tested",
            )
        elif conn.connect_error == "no-resources-here":
            yield make(
                "smtp.not_tested_from_here",
                f"{conn.address} was not tested: this host ran out of sockets or memory",
            )
        elif conn.connect_error == "refused":
            yield make("smtp.connect_refused", f"TCP connection to port {conn.port} refused")
        else:
            yield make(
                "smtp.connect_timeout",
                f"no TCP connection to port {conn.port} within {conn.timeout:.1f} s"
                if conn.connect_error == "timeout"
                else f"cannot reach port {conn.port} ({conn.connect_error})",
            )
        return
    if step == "handshake":
        yield make("tls.handshake_failed", f"TLS handshake failed: {handshake_failure(conn)}")
        return
    if step == "starttls" and conn.starttls is False:
        yield make("tls.starttls_not_offered", "EHLO reply does not list STARTTLS")
        return
    reply = conn.stop_reply
    if reply is None:
        what = conn.stop_what
        if conn.stop_failure == "overflow":
            yield make("smtp.malformed_reply", f"the {what} broke the size caps; reading stopped")
            # The reply never ends, so no sender gets past this step either: it waits until
            # its own timeout or buffer limit and defers. That is a dialogue failure (an
            # error), which smtp.malformed_reply, a warning about syntax, does not say.
            yield make(
                "smtp.timeout",
                f"the {what} never ended (more than {MAX_REPLY_LINES} lines or "
                f"{MAX_REPLY_OCTETS // 1024} KiB without a final line): the dialogue cannot go on",
            )
        elif conn.stop_failure == "timeout":
            yield make("smtp.timeout", f"no {what} within {conn.timeout:.1f} s")
        elif conn.stop_failure in ("closed", "reset"):
            yield make(
                "smtp.timeout", f"connection {conn.stop_failure} by server before the {what}"
            )
        return
    shown = _first_line(reply)[:120]
    if step == "greeting":
        if _is_rate_limit(reply):
            yield make("smtp.rate_limited", f"greeting says the server is throttling: {shown}")
        elif reply.code == 0:
            yield make("smtp.greeting_rejected", f"greeting is not an SMTP reply: {shown}")
        else:
            yield make("smtp.greeting_rejected", f"greeting is {reply.code}, not 220: {shown}")
    elif step in ("ehlo", "ehlo-tls"):
        if reply.code == 421:
            yield make("smtp.rate_limited", f"EHLO answered with 421: {shown}")
        else:
            when = " after TLS" if step == "ehlo-tls" else ""
            yield make("smtp.ehlo_rejected", f"EHLO{when} answered with {reply.code}: {shown}")
    elif step == "starttls":
        if reply.code == 421:
            yield make("smtp.rate_limited", f"STARTTLS answered with 421: {shown}")
        else:
            yield make("tls.starttls_refused", f"STARTTLS answered with {reply.code}: {shown}")


# OpenSSL's words for "no protocol version both sides speak".
_NO_COMMON_VERSION = (
    "protocol_version",
    "UNSUPPORTED_PROTOCOL",
    "TLSV1_ALERT_PROTOCOL_VERSION",
    "WRONG_SSL_VERSION",
    "NO_PROTOCOLS_AVAILABLE",
    "VERSION_TOO_LOW",
    "VERSION_TOO_HIGH",
)


def handshake_failure(conn: SmtpConnection) -> str:
    """What a failed handshake says, told apart: no version in common (the server refused
    the ClientHello's versions) from a handshake that fails after the server chose a version
    and sent its chain, which no version choice can fix."""
    reason = conn.tls_error or "unknown error"
    if conn.failed_version is not None:
        sent = (
            f" and sent its certificate chain ({len(conn.failed_chain)} "
            f"certificate{'s' if len(conn.failed_chain) != 1 else ''})"
            if conn.failed_chain
            else ""
        )
        return (
            f"{reason}; the server had chosen {conn.failed_version}{sent}, so this is no "
            "version mismatch: the server fails its own part of the handshake (often a key "
            "or certificate it cannot use)"
        )
    if conn.failed_before_hello and any(word in reason for word in _NO_COMMON_VERSION):
        return f"{reason}; no TLS version in common (the server refused every version offered)"
    return reason


def throttle_findings(conn: SmtpConnection, where: Where, what: str) -> Iterator[FindingRaised]:
    """smtp.rate_limited when an extra connection (`what`: version sweep, injection test)
    was throttled. Only that: any other stop is the main session's to report. Without it, a
    server that admits one connection and answers 421 to the next leaves the sweep's blanks
    unexplained."""
    for event in _stop_findings(conn, where):
        if event.finding.id == "smtp.rate_limited":
            finding = event.finding
            yield FindingRaised(replace(finding, summary=f"{what}: {finding.summary}"))


def _tls_findings(conn: SmtpConnection, where: Where) -> Iterator[FindingRaised]:
    tls = conn.tls
    assert tls is not None
    ev = (f"transcript:{conn.tls_index}",)
    if version_below_12(tls.version):
        yield FindingRaised(
            raise_finding(
                "tls.legacy_only",
                where,
                f"negotiated {tls.version} although this client offered up to TLSv1.3",
                evidence=ev,
            )
        )
    reason = weak_cipher_reason(tls.cipher)
    if reason:
        yield FindingRaised(
            raise_finding(
                "tls.weak_cipher", where, f"negotiated {tls.cipher} ({reason})", evidence=ev
            )
        )
    if not has_forward_secrecy(tls.version, tls.cipher):
        yield FindingRaised(
            raise_finding(
                "tls.no_forward_secrecy",
                where,
                f"negotiated {tls.cipher} over {tls.version}: no ephemeral key exchange",
                evidence=ev,
            )
        )


def rate_limit_backoff(options: Options) -> float:
    """Seconds to wait after a throttle before the one retry: min(5, timeout) unless set."""
    if options.rate_limit_backoff is not None:
        return max(0.0, float(options.rate_limit_backoff))
    return min(5.0, float(options.timeout))


def throttled(conn: SmtpConnection) -> bool:
    """The dialogue stopped on a throttle (421 / "too many connections"), not a verdict."""
    reply = conn.stop_reply
    if reply is None or conn.stopped_at not in ("greeting", "ehlo", "ehlo-tls", "starttls"):
        return False
    return reply.code == 421 or (conn.stopped_at == "greeting" and _is_rate_limit(reply))


async def smtp_session(
    where: Where,
    options: Options,
    *,
    purpose: SessionPurpose = "main",
    ehlo_name: str,
    retry_throttled: bool = True,
) -> AsyncIterator[Event]:
    """One SMTP dialogue with where.address:port, as far as TLS and a second EHLO.

    Yields SessionStarted, TranscriptLines as they happen, TlsNegotiated, ChainReceived,
    findings, and SessionFinished whose outcome is "ok" or the step where it stopped
    (connect, greeting, ehlo, starttls, handshake, ehlo-tls). Never sends MAIL/RCPT/DATA.

    Politeness: when the server throttles (421 / "too many connections"), the session waits
    `rate_limit_backoff(options)` seconds and tries ONE more connection (same transcript).
    If the retry works, the result is that of the retry plus smtp.rate_limited as info (a
    throttle that cleared: senders retry too, mail flows); if it is throttled again,
    smtp.rate_limited keeps its catalog severity (warning) and nothing else is judged.
    SessionFinished.connections counts both connections.
    """
    yield SessionStarted(where, purpose)
    transcript = Transcript(where, purpose)
    implicit = options.implicit_tls
    connections = 0
    first_throttle: tuple[int | None, str] | None = None
    while True:
        connections += 1
        conn = smtp_connection(where, options, transcript)
        retry_left = retry_throttled and connections == 1
        try:
            async for event in _dialogue(
                conn, where, ehlo_name, implicit, judge_throttle=not retry_left
            ):
                yield event
        finally:
            await conn.close()
        if retry_left and throttled(conn):
            assert conn.stop_reply is not None
            first_throttle = (conn.stop_index, _first_line(conn.stop_reply)[:120])
            wait = rate_limit_backoff(options)
            yield transcript.line(
                "!", f"throttled by the server; waiting {wait:.1f} s before one retry"
            )
            await asyncio.sleep(wait)
            yield transcript.line("!", "connection 2: retrying once after the throttle")
            continue
        break
    if first_throttle is not None:
        index, shown = first_throttle
        if throttled(conn):
            # The retry's own smtp.rate_limited (a warning) was yielded by _dialogue.
            yield transcript.line("!", "throttled again on the retry; giving up politely")
        else:
            yield FindingRaised(
                raise_finding(
                    "smtp.rate_limited",
                    where,
                    f"first connection throttled ({shown}); the retry after "
                    f"{rate_limit_backoff(options):.1f} s was answered",
                    evidence=(f"transcript:{index}",),
                    severity="info",
                )
            )
    outcome = conn.stopped_at or "ok"
    yield SessionFinished(
        where,
        purpose,
        outcome,
        None if implicit else conn.starttls,
        connections=connections,
        throttled=throttled(conn),
    )


async def _dialogue(
    conn: SmtpConnection,
    where: Where,
    ehlo_name: str,
    implicit: bool,
    *,
    judge_throttle: bool = True,
) -> AsyncIterator[Event]:
    """The steps of one connection, then the findings they show. With judge_throttle False
    a throttled connection yields no findings: the caller retries and judges the retry."""
    async for event in prepare_tls(conn, ehlo_name, implicit=implicit):
        yield event
    if conn.stopped_at is None:
        recorder = HandshakeRecorder(conn.transcript.t_ms)
        ctx = conn.client_context(TlsOffer(), recorder)
        async for event in conn.handshake(ctx, recorder, sni_for(where.host)):
            yield event
    # Imported here: cryptography is heavy, and a check's first DNS query should not wait
    # for it (diagnose loads it in a thread meanwhile).
    from probes.checks.certificates import parse_certificate

    if conn.tls is None and conn.failed_chain:
        # The chain went out before the failure: keep it as evidence (and validate it).
        yield ChainReceived(where, tuple(parse_certificate(der) for der in conn.failed_chain))
    if conn.tls is not None:
        tls = conn.tls
        yield TlsNegotiated(
            where,
            tls.version,
            tls.cipher,
            tls.bits,
            has_forward_secrecy(tls.version, tls.cipher),
            tls.group,
            tls.steps,
            tls.sni,
        )
        yield ChainReceived(where, tuple(parse_certificate(der) for der in tls.chain))
        for finding in _tls_findings(conn, where):
            yield finding
        if implicit:
            async for event in conn.greeting():
                yield event
            if conn.stopped_at is None:
                async for event in conn.ehlo(ehlo_name):
                    yield event
        else:
            async for event in conn.ehlo(ehlo_name, step="ehlo-tls"):
                yield event
            reply = conn.ehlo_reply
            if conn.stopped_at is None and reply is not None and "STARTTLS" in reply.keywords:
                line = reply.keyword_line("STARTTLS")
                at = conn.ehlo_indexes[line if line is not None else 0]
                yield FindingRaised(
                    raise_finding(
                        "tls.starttls_still_offered",
                        where,
                        "EHLO after TLS still lists STARTTLS",
                        evidence=(f"transcript:{at}",),
                    )
                )
        if conn.stopped_at is None:
            async for event in conn.quit():
                yield event
    if not judge_throttle and throttled(conn):
        return
    for finding in _stop_findings(conn, where):
        yield finding
    if conn.malformed:
        index, reasons = conn.malformed[0]
        more = f" (and {len(conn.malformed) - 1} more replies)" if len(conn.malformed) > 1 else ""
        yield FindingRaised(
            raise_finding(
                "smtp.malformed_reply",
                where,
                f"reply breaks RFC 5321: {reasons[0]}{more}",
                evidence=(f"transcript:{index}",),
            )
        )
