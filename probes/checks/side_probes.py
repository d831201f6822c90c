"""The side probes: extra connections that learn what the main session cannot.

After the main session (which offers everything up to TLS 1.3 and so already tells the best
version, the suite and whether it has forward secrecy), at most three more connections per
address answer the rest, concurrently, each with one ClientHello:

- cipher probe: TLS 1.2 only, offering the weak suites this OpenSSL has (NULL) and then the
  static-RSA ones. A completed handshake proves TLS 1.2 and says which family is accepted;
  the alert of a refused one tells a version refusal (protocol_version) from a suite refusal.
- legacy probe: TLS 1.0 and 1.1 together (capped at 1.1): are old versions still accepted?
- injection test: STARTTLS and NOOP in one write, then a normal handshake.

Only when the cipher probe's answer leaves one family open (the server picked the other) and a
connection of the budget is left does a fourth ask that family alone. A 421 on any of them
stops further probes to the address and is reported as info: it never changes the verdict.
Every question ends as data (SideProbeChecked: vulnerable, not vulnerable or inconclusive);
what is wrong is also a finding. These build on net/smtp.py and net/tls.py, never the reverse.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from functools import cache

from probes.checks.session import throttle_findings, throttled
from probes.model.events import (
    Event,
    FindingRaised,
    SessionFinished,
    SessionPurpose,
    SessionStarted,
    SideCheck,
    SideProbeChecked,
    SideResult,
    TlsVersionsProbed,
    Where,
)
from probes.model.findings import raise_finding
from probes.model.options import Options
from probes.net.smtp import SmtpConnection, TlsState, Transcript, prepare_tls, smtp_connection
from probes.net.tls import (
    TLS_VERSIONS,
    HandshakeRecorder,
    TlsOffer,
    has_forward_secrecy,
    local_version_support,
    sni_for,
    weak_cipher_reason,
)

# At most this many connections per address besides the main session, and at most this many
# open at once: the whole plan is polite enough for a server that limits a client to four.
SIDE_BUDGET = 3

# The checks a full diagnosis makes besides the main session, in the order they are reported
# (`--quick` and `--no-extra-probes` name them as skipped).
SIDE_CHECKS: tuple[SideCheck, ...] = ("legacy-tls", "static-rsa", "weak-suites", "injection")
CHECK_TEXT: dict[SideCheck, str] = {
    "legacy-tls": "TLS 1.0/1.1 acceptance",
    "static-rsa": "static-RSA (no forward secrecy) TLS 1.2 suites",
    "weak-suites": "weak TLS 1.2 suites (NULL, EXPORT, RC4, 3DES, DES)",
    "injection": "STARTTLS plaintext injection",
}

# TLS 1.2 suites without forward secrecy: static RSA key exchange only. NULL and anonymous
# suites are left out: they are the weak question.
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
# The static-RSA suite offered first after the weak ones: the one servers that still allow
# static RSA accept most. A server that picks it out of a list where weak suites came first
# follows the client's order, so it has none of those weak suites.
_FIRST_STATIC_RSA = "AES128-GCM-SHA256"


@cache
def _tls12_suites(cipher_string: str) -> tuple[str, ...]:
    """The TLS <= 1.2 suites this OpenSSL offers for a cipher string (empty: none)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.set_ciphers(cipher_string)
    except ssl.SSLError:
        return ()
    return tuple(c["name"] for c in ctx.get_ciphers() if c.get("protocol") != "TLSv1.3")


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


def static_rsa_suites() -> tuple[str, ...]:
    """The static-RSA suites in the order the cipher probe offers them."""
    suites = list(_tls12_suites(NON_FS_CIPHERS))
    # Weakest first (OpenSSL lists strongest first), with the most common one at the head.
    suites.reverse()
    if _FIRST_STATIC_RSA in suites:
        suites.remove(_FIRST_STATIC_RSA)
        suites.insert(0, _FIRST_STATIC_RSA)
    return tuple(suites)


def cipher_probe_offer(*, static_rsa: bool, weak: bool) -> tuple[str, tuple[str, ...]] | None:
    """(cipher string, static-RSA suites in it) for the cipher probe, weak suites first so a
    server that follows the client's order picks one of them if it has any; None when this
    host can offer neither family."""
    weak_string = weak_cipher_string() if weak else None
    weak_names = _tls12_suites(weak_string) if weak_string else ()
    rsa_names = static_rsa_suites() if static_rsa else ()
    if not weak_names and not rsa_names:
        return None
    return ":".join((*weak_names, *rsa_names)) + ":@SECLEVEL=0", rsa_names


# --------------------------------------------------------------------------- one connection


@dataclass
class _Shake:
    """How one probe connection went (filled in while its events stream)."""

    tls: TlsState | None = None
    refused: bool = False  # a ClientHello went out and the server refused it
    alert: str | None = None  # the alert the server sent, if it did
    error: str | None = None
    tls_index: int = 0
    stopped_at: str | None = None  # the dialogue broke before the handshake
    throttle: FindingRaised | None = None
    ms: float = 0.0
    conn: SmtpConnection | None = field(default=None, repr=False)

    @property
    def tested(self) -> bool:
        return self.tls is not None or self.refused

    def why_untested(self) -> str:
        if self.throttle is not None:
            return f"throttled ({self.throttle.finding.summary})"
        if self.stopped_at is not None:
            return f"the dialogue stopped at {self.stopped_at} before any handshake"
        return f"the handshake did not finish ({self.error or 'no answer'})"


async def _shake(
    where: Where,
    options: Options,
    transcript: Transcript,
    ehlo_name: str,
    offer: TlsOffer,
    state: _Shake,
    *,
    what: str,
    pipeline_noop: bool = False,
) -> AsyncIterator[Event]:
    """Connect, reach the handshake and make it with `offer`; the connection stays open
    (state.conn) for the caller, who must close it."""
    started = time.monotonic()
    conn = smtp_connection(where, options, transcript)
    state.conn = conn
    async for event in prepare_tls(
        conn, ehlo_name, implicit=options.implicit_tls, pipeline_noop=pipeline_noop
    ):
        yield event
    if conn.stopped_at is not None:
        state.stopped_at = conn.stopped_at
        if throttled(conn):
            state.throttle = next(iter(throttle_findings(conn, where, what)), None)
        state.ms = _ms_since(started)
        return
    recorder = HandshakeRecorder(transcript.t_ms)
    ctx = conn.client_context(offer, recorder)
    async for event in conn.handshake(ctx, recorder, sni_for(where.host)):
        yield event
    state.tls = conn.tls
    state.tls_index = conn.tls_index
    state.alert = recorder.alert_received
    state.error = conn.tls_error
    state.refused = conn.tls is None and recorder.client_hello_sent and not conn.tls_timed_out
    state.ms = _ms_since(started)


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000.0, 1)


async def _finish(conn: SmtpConnection | None) -> AsyncIterator[Event]:
    """QUIT without waiting for the 221 (it proves nothing here); the caller closes."""
    if conn is not None and conn.tls is not None:
        async for event in conn.quit(wait=False):
            yield event


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class MainFacts:
    """What the main session already told: the side probes ask only the rest."""

    version: str
    cipher: str
    tls_index: int  # the main transcript's line with the completed handshake
    key_type: str | None = None  # the leaf's key ("RSA", "EC", ...)


@dataclass
class _Plan:
    where: Where
    options: Options
    ehlo_name: str
    main: MainFacts
    connections_left: int = SIDE_BUDGET
    throttled: bool = False
    versions: dict[str, bool | None] = field(default_factory=dict)
    evidence: dict[str, str] = field(default_factory=dict)  # version -> "purpose:index"
    results: dict[SideCheck, SideProbeChecked] = field(default_factory=dict)
    throttle: FindingRaised | None = None
    transcripts: dict[str, Transcript] = field(default_factory=dict)
    slots: asyncio.Semaphore | None = None

    async def acquire_slot(self) -> None:
        """One of the diagnosis's connection slots, held while a probe connection is open."""
        if self.slots is not None:
            await self.slots.acquire()

    def release_slot(self) -> None:
        if self.slots is not None:
            self.slots.release()

    def transcript(self, purpose: SessionPurpose) -> Transcript:
        """One transcript per purpose, so a follow-up connection's lines number on from
        the first one's and evidence indexes stay unique."""
        if purpose not in self.transcripts:
            self.transcripts[purpose] = Transcript(self.where, purpose)
        return self.transcripts[purpose]

    def take_connection(self) -> bool:
        if self.throttled or self.connections_left <= 0:
            return False
        self.connections_left -= 1
        return True

    def note_throttle(self, state: _Shake) -> None:
        if state.throttle is not None:
            self.throttled = True
            if self.throttle is None:
                self.throttle = state.throttle

    def result(
        self,
        check: SideCheck,
        result: SideResult,
        reason: str,
        purpose: SessionPurpose,
        *,
        ms: float | None = None,
        index: int | None = None,
    ) -> SideProbeChecked:
        evidence = (f"transcript:{index}",) if index is not None else ()
        checked = SideProbeChecked(self.where, check, result, reason, purpose, ms, evidence)
        self.results[check] = checked
        return checked


_RANK = {v: i for i, v in enumerate(TLS_VERSIONS)}
_CIPHER_CHECKS: tuple[SideCheck, SideCheck] = ("static-rsa", "weak-suites")


async def side_probes(
    where: Where,
    options: Options,
    *,
    ehlo_name: str,
    main: MainFacts,
    slots: asyncio.Semaphore | None = None,
) -> AsyncIterator[Event]:
    """Every side probe for one address whose main session completed a handshake.

    Yields the probes' sessions (SessionStarted, transcript, SessionFinished per purpose),
    SideProbeChecked per question, TlsVersionsProbed, and findings: tls.legacy_accepted,
    tls.no_tls13, tls.non_fs_accepted, tls.weak_suite_accepted, tls.plaintext_injection,
    and smtp.rate_limited (info) when a probe was throttled. `slots`, when given, is the
    diagnosis's cap on open connections: each probe connection holds one while it is open.
    """
    plan = _Plan(where, options, ehlo_name, main, slots=slots)
    rank = _RANK.get(main.version, -1)
    main_ref = f"main:{main.tls_index}"
    # What the main session's own handshake proves: the server picks the best version both
    # sides have, so every version above the negotiated one is refused.
    for version in TLS_VERSIONS:
        if rank < 0:
            plan.versions[version] = None
        elif _RANK[version] == rank:
            plan.versions[version] = True
            plan.evidence[version] = main_ref
        elif _RANK[version] > rank:
            plan.versions[version] = False
            plan.evidence[version] = main_ref
    probes: list[AsyncIterator[Event]] = []
    legacy_open = any(plan.versions.get(v) is None for v in ("TLSv1", "TLSv1.1"))
    for item in _answered_by_main(plan, legacy_open=legacy_open):
        yield item
    ask_rsa = "static-rsa" not in plan.results
    ask_weak = "weak-suites" not in plan.results
    cipher_probe = False
    if plan.versions.get("TLSv1.2") is False:
        # TLS 1.2 is refused (the main session got less): its suites cannot be asked.
        for check, wanted in zip(_CIPHER_CHECKS, (ask_rsa, ask_weak), strict=True):
            if wanted:
                yield plan.result(
                    check,
                    "inconclusive",
                    f"TLSv1.2 is refused (the main session negotiated {main.version}): "
                    "the TLS 1.2 suite probe does not apply",
                    "main",
                    index=main.tls_index,
                )
    elif ask_rsa or ask_weak:
        offer = cipher_probe_offer(static_rsa=ask_rsa, weak=ask_weak)
        if offer is None:
            for check in _CIPHER_CHECKS:
                if check not in plan.results:
                    yield plan.result(
                        check,
                        "inconclusive",
                        "this host's OpenSSL cannot offer these suites",
                        "cipher-probe",
                    )
        elif plan.take_connection():
            cipher_probe = True
            probes.append(_cipher_probe(plan, offer[0], offer[1], ask_rsa, ask_weak))
    if legacy_open and plan.take_connection():
        probes.append(_legacy_probe(plan))
    if not options.implicit_tls and plan.take_connection():
        probes.append(_injection_test(plan))
    async for event in _merge(probes):
        yield event
    # A question the cipher probe left open gets a connection of its own, if one is left.
    asked: dict[SideCheck, bool] = {"static-rsa": ask_rsa, "weak-suites": ask_weak}
    for check, was_asked in asked.items():
        if cipher_probe and was_asked and check not in plan.results:
            async for event in _follow_up(plan, check):
                yield event
    if plan.versions.get("TLSv1.2") is None and rank > _RANK["TLSv1.2"]:
        # The cipher probe was cut off without an alert: ask TLS 1.2 with every suite.
        async for event in _confirm_tls12(plan):
            yield event
    if plan.throttle is not None:
        finding = plan.throttle.finding
        yield FindingRaised(
            replace(
                finding,
                severity="info",
                summary=f"{finding.summary}; later side probes not made (the verdict "
                "rests on the main session)",
            )
        )
    for event in _version_findings(plan):
        yield event


def _answered_by_main(plan: _Plan, *, legacy_open: bool) -> list[SideProbeChecked]:
    """The questions the main session's handshake already answered."""
    main = plan.main
    out: list[SideProbeChecked] = []
    if not legacy_open and _RANK.get(main.version, 99) < _RANK["TLSv1.2"]:
        out.append(
            plan.result(
                "legacy-tls",
                "vulnerable",
                f"the main session negotiated {main.version}",
                "main",
                index=main.tls_index,
            )
        )
    if not has_forward_secrecy(main.version, main.cipher) and not weak_cipher_reason(main.cipher):
        out.append(
            plan.result(
                "static-rsa",
                "vulnerable",
                f"the main session negotiated {main.cipher} (no forward secrecy)",
                "main",
                index=main.tls_index,
            )
        )
    if weak_cipher_reason(main.cipher):
        out.append(
            plan.result(
                "weak-suites",
                "vulnerable",
                f"the main session negotiated {main.cipher} ({weak_cipher_reason(main.cipher)})",
                "main",
                index=main.tls_index,
            )
        )
    return out


async def _cipher_probe(
    plan: _Plan, ciphers: str, rsa_names: Sequence[str], ask_rsa: bool, ask_weak: bool
) -> AsyncIterator[Event]:
    where = plan.where
    purpose: SessionPurpose = "cipher-probe"
    yield SessionStarted(where, purpose)
    transcript = plan.transcript(purpose)
    families = " and ".join(
        x for x, asked in (("weak", ask_weak), ("static-RSA", ask_rsa)) if asked
    )
    can, cannot = weak_families_available()
    if ask_weak and cannot:
        yield transcript.line(
            "!",
            f"this host's OpenSSL cannot offer {', '.join(cannot)} suites; "
            "a server accepting only those is not detected",
        )
    yield transcript.line("!", f"connection 1: TLSv1.2 only, offering only {families} suites")
    state = _Shake()
    offer = TlsOffer("TLSv1.2", "TLSv1.2", ciphers)

    def judge() -> list[Event]:
        return _judge_cipher_probe(plan, state, rsa_names, ask_rsa, ask_weak, transcript, families)

    async with aclosing(
        _probe(plan, purpose, transcript, offer, state, "cipher probe", judge)
    ) as run:
        async for event in run:
            yield event


async def _probe(
    plan: _Plan,
    purpose: SessionPurpose,
    transcript: Transcript,
    offer: TlsOffer,
    state: _Shake,
    what: str,
    judge: Callable[[], Iterable[Event]],
) -> AsyncGenerator[Event, None]:
    """One side-probe connection: what every probe shares around its own judgement.

    The slot is taken only for the connection and freed, with the connection closed, whatever
    happens (a probe that raises must not hold one of the three slots); SessionFinished comes
    after, so a session is reported over once its slot is free. `judge` runs after the
    handshake (and the throttle note) and before QUIT, to read `state` and fill `plan`.
    Callers run it under `aclosing`: a probe closed early then closes the connection and frees
    the slot at once, as the body written out in each probe did, not when it is collected."""
    where = plan.where
    await plan.acquire_slot()
    try:
        async for event in _shake(
            where, plan.options, transcript, plan.ehlo_name, offer, state, what=what
        ):
            yield event
        plan.note_throttle(state)
        for event in judge():
            yield event
        async for event in _finish(state.conn):
            yield event
    finally:
        if state.conn is not None:
            await state.conn.close(linger=False)
        plan.release_slot()
    yield SessionFinished(where, purpose, state.stopped_at or "ok", _starttls(plan, state))


def _starttls(plan: _Plan, state: _Shake) -> bool | None:
    if plan.options.implicit_tls or state.conn is None:
        return None
    return state.conn.starttls


def _judge_cipher_probe(
    plan: _Plan,
    state: _Shake,
    rsa_names: Sequence[str],
    ask_rsa: bool,
    ask_weak: bool,
    transcript: Transcript,
    families: str,
) -> list[Event]:
    out: list[Event] = []
    purpose: SessionPurpose = "cipher-probe"
    ref = f"cipher-probe:{state.tls_index}"
    if state.tls is not None:
        tls = state.tls
        plan.versions["TLSv1.2"] = True
        plan.evidence["TLSv1.2"] = ref
        reason = weak_cipher_reason(tls.cipher)
        if reason:
            out.extend(
                _accepted(plan, "weak-suites", "tls.weak_suite_accepted", tls, state, families)
            )
            key = plan.main.key_type
            if ask_rsa and key is not None and key != "RSA":
                out.append(
                    plan.result(
                        "static-rsa",
                        "not vulnerable",
                        f"the certificate's key is {key}: static-RSA key exchange needs an RSA key",
                        "main",
                        index=plan.main.tls_index,
                    )
                )
        else:
            out.extend(_accepted(plan, "static-rsa", "tls.non_fs_accepted", tls, state, families))
            if ask_weak and rsa_names and tls.cipher == rsa_names[0]:
                out.append(
                    plan.result(
                        "weak-suites",
                        "not vulnerable",
                        f"the server chose {tls.cipher}, the first static-RSA suite, over the "
                        "weak suites offered before it: it follows the client's order, so it "
                        "has none of them",
                        purpose,
                        ms=state.ms,
                        index=state.tls_index,
                    )
                )
    elif state.refused:
        if state.alert == "protocol_version":
            plan.versions["TLSv1.2"] = False
            plan.evidence["TLSv1.2"] = ref
            why = "TLSv1.2 refused (alert protocol_version): no TLS 1.2 suite can be negotiated"
        else:
            # The version was acceptable, the suites were not: the alert says which.
            if state.alert is not None:
                plan.versions["TLSv1.2"] = True
                plan.evidence["TLSv1.2"] = ref
            why = f"refused ({state.error}), as it should be"
        for check, asked in zip(_CIPHER_CHECKS, (ask_rsa, ask_weak), strict=True):
            if asked:
                out.append(
                    plan.result(
                        check, "not vulnerable", why, purpose, ms=state.ms, index=state.tls_index
                    )
                )
        out.append(transcript.line("!", f"offered suites {why}"))
    else:
        for check, asked in zip(_CIPHER_CHECKS, (ask_rsa, ask_weak), strict=True):
            if asked:
                out.append(
                    plan.result(check, "inconclusive", state.why_untested(), purpose, ms=state.ms)
                )
    return out


def _accepted(
    plan: _Plan, check: SideCheck, fid: str, tls: TlsState, state: _Shake, label: str
) -> list[Event]:
    return [
        plan.result(
            check,
            "vulnerable",
            f"accepted {tls.cipher} ({tls.version})",
            "cipher-probe",
            ms=state.ms,
            index=state.tls_index,
        ),
        FindingRaised(
            raise_finding(
                fid,
                plan.where,
                f"accepted {tls.cipher} ({tls.version}) when offered only {label} suites",
                evidence=(f"transcript:{state.tls_index}",),
            )
        ),
    ]


async def _follow_up(plan: _Plan, check: SideCheck) -> AsyncIterator[Event]:
    """The family the cipher probe left open (the server picked the other), alone."""
    where = plan.where
    purpose: SessionPurpose = "cipher-probe"
    if check == "static-rsa":
        names = static_rsa_suites()
        label, fid = "static-RSA", "tls.non_fs_accepted"
    else:
        weak = weak_cipher_string()
        names = _tls12_suites(weak) if weak else ()
        label, fid = "weak", "tls.weak_suite_accepted"
    if not names:
        yield plan.result(check, "inconclusive", "this host's OpenSSL cannot offer them", purpose)
        return
    if not plan.take_connection():
        why = (
            "throttled by the server"
            if plan.throttled
            else f"the server chose the other family and the {SIDE_BUDGET + 1}-connection "
            "budget per address is spent"
        )
        yield plan.result(check, "inconclusive", why, purpose)
        return
    yield SessionStarted(where, purpose)
    transcript = plan.transcript(purpose)
    yield transcript.line("!", f"connection 2: TLSv1.2 only, offering only {label} suites")
    state = _Shake()
    offer = TlsOffer("TLSv1.2", "TLSv1.2", ":".join(names) + ":@SECLEVEL=0")

    def judge() -> list[Event]:
        if state.tls is not None:
            return _accepted(plan, check, fid, state.tls, state, label)
        if state.refused:
            return [
                plan.result(
                    check,
                    "not vulnerable",
                    f"refused ({state.error}), as it should be",
                    purpose,
                    ms=state.ms,
                    index=state.tls_index,
                ),
                transcript.line("!", f"{label} suites refused, as they should be"),
            ]
        return [plan.result(check, "inconclusive", state.why_untested(), purpose, ms=state.ms)]

    async with aclosing(
        _probe(plan, purpose, transcript, offer, state, "cipher probe", judge)
    ) as run:
        async for event in run:
            yield event


async def _confirm_tls12(plan: _Plan) -> AsyncIterator[Event]:
    """TLS 1.2 with every suite, when no other probe could tell whether it is accepted."""
    if not plan.take_connection():
        return
    where = plan.where
    purpose: SessionPurpose = "tls-versions"
    yield SessionStarted(where, purpose)
    transcript = plan.transcript(purpose)
    yield transcript.line("!", "connection 2: offering TLSv1.2 only, every suite")
    state = _Shake()

    def judge() -> list[Event]:
        if state.tested:
            plan.versions["TLSv1.2"] = state.tls is not None
            plan.evidence["TLSv1.2"] = f"tls-versions:{state.tls_index}"
        return []

    offer = TlsOffer("TLSv1.2", "TLSv1.2")
    async with aclosing(
        _probe(plan, purpose, transcript, offer, state, "TLS version sweep", judge)
    ) as run:
        async for event in run:
            yield event


async def _legacy_probe(plan: _Plan) -> AsyncIterator[Event]:
    """TLS 1.0 and 1.1 in one ClientHello (only 1.0 when the main session got 1.1)."""
    where = plan.where
    purpose: SessionPurpose = "tls-versions"
    yield SessionStarted(where, purpose)
    transcript = plan.transcript(purpose)
    wanted = [v for v in ("TLSv1", "TLSv1.1") if plan.versions.get(v) is None]
    offerable = [v for v in wanted if local_version_support(v)]
    state = _Shake()
    if not offerable:
        yield transcript.line("!", f"{' and '.join(wanted)}: this host cannot offer them")
        yield plan.result(
            "legacy-tls", "inconclusive", "this host's OpenSSL cannot offer TLS 1.0/1.1", purpose
        )
        yield SessionFinished(where, purpose, "ok", None, connections=0)
        return
    low, high = offerable[0], offerable[-1]
    shown = low if low == high else f"{low} to {high}"
    yield transcript.line("!", f"connection 1: offering {shown} only")

    def judge() -> list[Event]:
        ref = f"tls-versions:{state.tls_index}"
        if state.tls is not None:
            got = state.tls.version
            plan.versions[got] = True
            plan.evidence[got] = ref
            for version in offerable:
                # The server picks the best version offered: one above it is refused.
                if _RANK.get(version, -1) > _RANK.get(got, 99):
                    plan.versions[version] = False
                    plan.evidence[version] = ref
            why = f"accepted {got} ({state.tls.cipher})"
        elif state.refused:
            for version in offerable:
                plan.versions[version] = False
                plan.evidence[version] = ref
            why = f"{shown} refused ({state.error})"
        else:
            why = state.why_untested()
        # The main session may have shown one legacy version already (it got TLS 1.1).
        known = [plan.versions.get(v) for v in ("TLSv1", "TLSv1.1")]
        accepted = [v for v in ("TLSv1", "TLSv1.1") if plan.versions.get(v) is True]
        if accepted:
            if state.tls is None:
                why = f"the main session negotiated {accepted[0]}; {why}"
            result: SideResult = "vulnerable"
        elif all(k is False for k in known):
            result = "not vulnerable"
        else:
            result = "inconclusive"
        index = state.tls_index if state.tested else None
        return [plan.result("legacy-tls", result, why, purpose, ms=state.ms, index=index)]

    offer = TlsOffer(low, high)
    async with aclosing(
        _probe(plan, purpose, transcript, offer, state, "TLS version sweep", judge)
    ) as run:
        async for event in run:
            yield event


async def _injection_test(plan: _Plan) -> AsyncIterator[Event]:
    """Does the server execute a command pipelined with STARTTLS after TLS starts?

    CVE-2011-0411 class: "STARTTLS\\r\\nNOOP\\r\\n" goes out in one write; a server that
    keeps the NOOP buffered across the upgrade answers it inside TLS, so a man in the middle
    could inject commands into the encrypted session.
    """
    where = plan.where
    purpose: SessionPurpose = "injection"
    check: SideCheck = "injection"
    yield SessionStarted(where, purpose)
    transcript = plan.transcript(purpose)
    state = _Shake()
    await plan.acquire_slot()
    try:
        async for event in _shake(
            where,
            plan.options,
            transcript,
            plan.ehlo_name,
            TlsOffer(),
            state,
            what="STARTTLS injection test",
            pipeline_noop=True,
        ):
            yield event
        plan.note_throttle(state)
        conn = state.conn
        assert conn is not None
        if state.tls is None:
            if state.throttle is not None or state.stopped_at not in ("starttls", None):
                why = state.why_untested()
            elif state.stopped_at == "starttls" or state.refused or conn.failure is not None:
                why = (
                    "the server dropped the connection or refused the handshake when "
                    "STARTTLS and NOOP arrived together (OpenSMTPD and Dovecot do): "
                    f"{state.error or state.why_untested()}"
                )
            else:
                why = state.why_untested()
            yield transcript.line("!", f"the injection test is inconclusive: {why}")
            yield plan.result(check, "inconclusive", why, purpose, ms=state.ms)
        else:
            async for event in _read_after_quit(plan, conn, transcript, state):
                yield event
    finally:
        if state.conn is not None:
            await state.conn.close(linger=False)
        plan.release_slot()
    yield SessionFinished(where, purpose, state.stopped_at or "ok", _starttls(plan, state))


async def _read_after_quit(
    plan: _Plan, conn: SmtpConnection, transcript: Transcript, state: _Shake
) -> AsyncIterator[Event]:
    # No idle wait for a NOOP reply that should never come: send QUIT and read ONE reply. A
    # vulnerable server queued the 250 for the pipelined NOOP before it read QUIT, so its
    # first reply inside TLS is 250; a correct server never saw the NOOP and answers 221.
    started = time.monotonic()
    where = plan.where
    purpose: SessionPurpose = "injection"
    for line in conn.send("QUIT"):
        yield line
    async for event in conn.read_reply("first reply inside TLS", quiet=True):
        yield event
    ms = round(state.ms + (time.monotonic() - started) * 1000.0, 1)
    reply = conn.reply
    if reply is not None and reply.code != 221:
        first = reply.lines[0][:80] if reply.lines else ""
        yield FindingRaised(
            raise_finding(
                "tls.plaintext_injection",
                where,
                f"NOOP sent in clear text with STARTTLS was answered inside TLS: {first}",
                evidence=(f"transcript:{conn.reply_index}",),
            )
        )
        yield plan.result(
            "injection",
            "vulnerable",
            f"the first reply inside TLS answers the NOOP: {first}",
            purpose,
            ms=ms,
            index=conn.reply_index,
        )
        # The QUIT's own 221 follows; a missing one proves nothing.
        async for event in conn.read_reply(
            "QUIT reply", timeout=min(2.0, plan.options.timeout), quiet=True
        ):
            yield event
    elif reply is not None:
        yield transcript.line(
            "!",
            "the first reply inside TLS answers QUIT, not the pipelined NOOP: "
            "the server discarded the clear-text command (not vulnerable)",
        )
        yield plan.result(
            "injection",
            "not vulnerable",
            "the first reply inside TLS answers QUIT: the clear-text NOOP was discarded",
            purpose,
            ms=ms,
            index=conn.reply_index,
        )
    else:
        why = f"no reply inside TLS ({conn.failure or 'nothing'})"
        yield transcript.line("!", f"{why}: the injection test is inconclusive")
        yield plan.result("injection", "inconclusive", why, purpose, ms=ms)


def _version_findings(plan: _Plan) -> list[Event]:
    where = plan.where
    out: list[Event] = [
        TlsVersionsProbed(where, tuple((v, plan.versions.get(v)) for v in TLS_VERSIONS))
    ]
    results = plan.versions
    legacy = [v for v in ("TLSv1", "TLSv1.1") if results.get(v) is True]
    modern = [v for v in ("TLSv1.2", "TLSv1.3") if results.get(v) is True]
    if legacy and modern:
        out.append(
            FindingRaised(
                raise_finding(
                    "tls.legacy_accepted",
                    where,
                    f"{' and '.join(legacy)} still accepted besides {' and '.join(modern)}",
                    evidence=(_transcript_ref(plan.evidence[legacy[0]]),),
                )
            )
        )
    if results.get("TLSv1.3") is False and results.get("TLSv1.2") is True:
        out.append(
            FindingRaised(
                raise_finding(
                    "tls.no_tls13",
                    where,
                    "TLSv1.3 refused; best version accepted is TLSv1.2",
                    evidence=(_transcript_ref(plan.evidence["TLSv1.3"]),),
                )
            )
        )
    return out


def _transcript_ref(ref: str) -> str:
    return "transcript:" + ref.rsplit(":", 1)[1]


# --------------------------------------------------------------------------- merging


_DONE = object()


async def _merge(streams: Sequence[AsyncIterator[Event]]) -> AsyncIterator[Event]:
    """The events of concurrent probes, in arrival order (each probe one task)."""
    if not streams:
        return
    queue: asyncio.Queue[object] = asyncio.Queue()

    async def drain(stream: AsyncIterator[Event]) -> None:
        try:
            async for event in stream:
                queue.put_nowait(event)
        finally:
            queue.put_nowait(_DONE)

    tasks = [asyncio.create_task(drain(stream)) for stream in streams]
    try:
        remaining = len(tasks)
        while remaining:
            item = await queue.get()
            if item is _DONE:
                remaining -= 1
                continue
            yield item  # type: ignore[misc]
        for task in tasks:
            task.result()  # a probe's exception is the caller's
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def skipped_checks() -> tuple[SideCheck, ...]:
    """What a check without side probes (`--quick`, `--no-extra-probes`) leaves out."""
    return SIDE_CHECKS
