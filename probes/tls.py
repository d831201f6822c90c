"""TLS for the SMTP probes: client contexts, the handshake recorder, and the extra probes.

smtp.py stays about SMTP; everything that knows TLS internals lives here: how a diagnostic
client context is built (no verification, legacy versions and weak ciphers allowed so broken
servers still complete and can be judged), how handshake messages are read from OpenSSL's
message callback, how the chain is taken from an `ssl.SSLObject` on every Python version, and
the extra probes that need their own connections (version sweep, TLS 1.2 cipher probe,
STARTTLS injection).
"""

from __future__ import annotations

import ssl
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .events import (
    Event,
    FindingRaised,
    SessionFinished,
    SessionPurpose,
    SessionStarted,
    TlsVersionsProbed,
    Where,
)
from .findings import raise_finding
from .names import is_ip_literal
from .options import Options

if TYPE_CHECKING:
    from .smtp import TlsState, Transcript

TLS_VERSIONS: tuple[str, ...] = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")

_VERSION_ENUM: dict[str, ssl.TLSVersion] = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
_VERSION_RANK = {name: i for i, name in enumerate(TLS_VERSIONS)}

# Handshake message types (RFC 8446 4, RFC 5246 7.4).
_HS_NAMES = {
    0: "HelloRequest",
    1: "ClientHello",
    2: "ServerHello",
    4: "NewSessionTicket",
    5: "EndOfEarlyData",
    8: "EncryptedExtensions",
    11: "Certificate",
    12: "ServerKeyExchange",
    13: "CertificateRequest",
    14: "ServerHelloDone",
    15: "CertificateVerify",
    16: "ClientKeyExchange",
    20: "Finished",
    22: "CertificateStatus",
    24: "KeyUpdate",
}
# TLS alert descriptions (RFC 8446 6, RFC 5246 7.2).
_ALERTS = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    22: "record_overflow",
    40: "handshake_failure",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    109: "missing_extension",
    110: "unsupported_extension",
    112: "unrecognized_name",
    116: "certificate_required",
    120: "no_application_protocol",
}
# Named groups (IANA TLS Supported Groups registry).
_GROUPS = {
    23: "secp256r1",
    24: "secp384r1",
    25: "secp521r1",
    26: "brainpoolP256r1",
    27: "brainpoolP384r1",
    28: "brainpoolP512r1",
    29: "x25519",
    30: "x448",
    256: "ffdhe2048",
    257: "ffdhe3072",
    258: "ffdhe4096",
    259: "ffdhe6144",
    260: "ffdhe8192",
    0x11EB: "SecP256r1MLKEM768",
    0x11EC: "X25519MLKEM768",
    0x11ED: "SecP384r1MLKEM1024",
    0x6399: "X25519Kyber768Draft00",
}
# SHA-256("HelloRetryRequest"): the ServerHello.random of a HelloRetryRequest (RFC 8446 4.1.3).
_HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
# Every RFC 7919 ffdhe prime starts with 64 one-bits and then these bits of e.
_FFDHE_PREFIX = bytes.fromhex("ffffffffffffffffadf85458a2bb4a9a")

_CT_ALERT = 21
_CT_HANDSHAKE = 22


def group_name(code: int) -> str:
    """The IANA name of a TLS named group, or its number when unknown."""
    return _GROUPS.get(code, f"group 0x{code:04x}")


def alert_name(code: int) -> str:
    return _ALERTS.get(code, f"alert {code}")


def local_version_support(version: str) -> bool:
    """Whether this Python/OpenSSL can offer `version` at all."""
    flag = {
        "TLSv1": "HAS_TLSv1",
        "TLSv1.1": "HAS_TLSv1_1",
        "TLSv1.2": "HAS_TLSv1_2",
        "TLSv1.3": "HAS_TLSv1_3",
    }.get(version)
    return bool(flag and getattr(ssl, flag, False))


def sni_for(host: str) -> str | None:
    """The SNI to send for a host name: none for IP literals (RFC 6066 3 forbids them)."""
    name = host.strip().rstrip(".")
    return None if is_ip_literal(name) else (name or None)


class HandshakeRecorder:
    """Collects handshake steps from `SSLContext._msg_callback`, with their times.

    OpenSSL calls back for every record it reads or writes (TLS 1.3 messages after they are
    decrypted). We keep handshake messages and alerts as transcript steps, and the raw
    ServerHello / ServerKeyExchange, from which the key-exchange group is read afterwards.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._steps: list[tuple[float, str]] = []
        self.client_hello_sent = False
        self.server_hello_seen = False
        self.alert_received: str | None = None
        self.alert_sent: str | None = None
        self._hello_group: int | None = None
        self._ske: bytes | None = None

    def callback(
        self,
        conn: Any,
        direction: str,
        version: Any,
        content_type: Any,
        msg_type: Any,
        data: bytes,
    ) -> None:
        # Runs inside OpenSSL: it must never raise, whatever the peer sent.
        try:
            self._record(direction, int(content_type), int(msg_type), bytes(data))
        except Exception:  # noqa: BLE001 - a malformed message must not break the handshake
            pass

    def _record(self, direction: str, content_type: int, msg_type: int, data: bytes) -> None:
        arrow = "->" if direction == "write" else "<-"
        if content_type == _CT_HANDSHAKE:
            name = _HS_NAMES.get(msg_type, f"handshake message {msg_type}")
            if msg_type == 1 and direction == "write":
                self.client_hello_sent = True
            if msg_type == 2 and direction == "read":
                self.server_hello_seen = True
                hrr, group = parse_server_hello(data)
                if hrr:
                    name = "HelloRetryRequest"
                if group is not None:
                    self._hello_group = group
            if msg_type == 12 and direction == "read":
                self._ske = data
            self._steps.append((self._clock(), f"{arrow} {name}"))
        elif content_type == _CT_ALERT and len(data) >= 2:
            level = {1: "warning", 2: "fatal"}.get(data[0], f"level {data[0]}")
            desc = alert_name(data[1])
            if direction == "read":
                self.alert_received = self.alert_received or desc
            else:
                self.alert_sent = self.alert_sent or desc
            self._steps.append((self._clock(), f"{arrow} alert {level} {desc}"))

    def drain(self) -> list[tuple[float, str]]:
        """Steps recorded since the last drain, oldest first: (t_ms, text)."""
        steps, self._steps = self._steps, []
        return steps

    def group(self, version: str | None, cipher: str | None) -> str | None:
        """The negotiated key-exchange group, when the messages showed it."""
        if version == "TLSv1.3":
            return group_name(self._hello_group) if self._hello_group is not None else None
        if self._ske is not None and cipher:
            return parse_server_key_exchange(self._ske, cipher)
        return None


def parse_server_hello(msg: bytes) -> tuple[bool, int | None]:
    """(is HelloRetryRequest, key_share group) from a ServerHello handshake message
    (with its 4-byte header). Tolerates truncation: missing parts give None."""
    body = msg[4:]
    if len(body) < 35:
        return False, None
    hrr = body[2:34] == _HRR_RANDOM
    pos = 34
    sid_len = body[pos]
    pos += 1 + sid_len + 2 + 1  # session id, cipher suite, compression method
    if pos + 2 > len(body):
        return hrr, None
    end = min(len(body), pos + 2 + int.from_bytes(body[pos : pos + 2], "big"))
    pos += 2
    while pos + 4 <= end:
        etype = int.from_bytes(body[pos : pos + 2], "big")
        elen = int.from_bytes(body[pos + 2 : pos + 4], "big")
        edata = body[pos + 4 : pos + 4 + elen]
        if etype == 51 and len(edata) >= 2:  # key_share
            return hrr, int.from_bytes(edata[:2], "big")
        pos += 4 + elen
    return hrr, None


def parse_server_key_exchange(msg: bytes, cipher: str) -> str | None:
    """The group of a TLS 1.0-1.2 ServerKeyExchange (with its 4-byte header).

    The message does not say which key exchange it is for, so the cipher name decides
    (a DHE prime length can start with the same byte as the ECDHE curve type)."""
    body = msg[4:]
    name = cipher.upper()
    if "ECDH" in name:
        if len(body) >= 3 and body[0] == 3:  # named_curve (RFC 8422 5.4)
            return group_name(int.from_bytes(body[1:3], "big"))
        return None
    if "DHE" in name or "EDH" in name or "ADH" in name:
        if len(body) < 2:
            return None
        plen = int.from_bytes(body[:2], "big")
        prime = body[2 : 2 + plen]
        bits = int.from_bytes(prime, "big").bit_length()
        if not bits:
            return None
        if prime.startswith(_FFDHE_PREFIX):
            return f"ffdhe{bits}"
        return f"dh{bits}"
    return None


def build_client_context(
    *,
    version: str | None = None,
    recorder: HandshakeRecorder | None = None,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    """A client context for diagnosis, not for trust.

    Verification is off so the chain is always received (validation is the certificates
    probe's job); TLS 1.0 and SECLEVEL=0 are allowed so legacy servers still complete and
    can be diagnosed. `version` pins min = max to that one version (for the sweep).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    # TLSVersion.TLSv1/1_1 are deprecated in the ssl module; we use them on purpose.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if version is None:
            ctx.minimum_version = ssl.TLSVersion.TLSv1
        else:
            ctx.minimum_version = _VERSION_ENUM[version]
            ctx.maximum_version = _VERSION_ENUM[version]
    try:
        # ALL:eNULL, not DEFAULT: DEFAULT removes NULL and anonymous suites for good, and then
        # a server that only has them looks like a handshake failure, not a weak cipher.
        ctx.set_ciphers(ciphers or "ALL:eNULL:@SECLEVEL=0")
    except ssl.SSLError:
        if ciphers is not None:
            raise  # a probe asked for suites this OpenSSL lacks: the caller must know
        pass  # an OpenSSL without SECLEVEL keeps its defaults; legacy servers may then fail
    if recorder is not None:
        try:
            ctx._msg_callback = recorder.callback  # type: ignore[attr-defined]
        except (AttributeError, NotImplementedError, TypeError):
            pass  # no transcript of handshake messages and no group on this Python
    return ctx


def peer_chain_der(sslobj: Any) -> list[bytes]:
    """The certificates the server sent, in order, as DER.

    Python 3.13 has `SSLObject.get_unverified_chain()` (DER bytes); 3.10-3.12 only have the
    private `_sslobj.get_unverified_chain()` (objects with `public_bytes`). Without either we
    fall back to the leaf alone.
    """
    items: Any = None
    for owner in (sslobj, getattr(sslobj, "_sslobj", None)):
        method = getattr(owner, "get_unverified_chain", None)
        if method is None:
            continue
        try:
            items = method()
        except Exception:  # noqa: BLE001 - private API: degrade to the leaf
            items = None
        if items:
            break
    out: list[bytes] = []
    for item in items or ():
        if isinstance(item, (bytes, bytearray)):
            out.append(bytes(item))
            continue
        try:
            import _ssl

            out.append(bytes(item.public_bytes(getattr(_ssl, "ENCODING_DER", 2))))
        except Exception:  # noqa: BLE001
            continue
    if not out:
        try:
            leaf = sslobj.getpeercert(binary_form=True)
        except Exception:  # noqa: BLE001
            leaf = None
        if leaf:
            out.append(bytes(leaf))
    return out


def weak_cipher_reason(cipher: str) -> str | None:
    """Why a negotiated cipher is weak (RC4, 3DES, single DES, NULL, EXPORT, anonymous)."""
    name = cipher.upper()
    checks = (
        ("RC4", "RC4"),
        ("DES-CBC3", "3DES"),
        ("3DES", "3DES"),
        ("_DES_", "DES"),
        ("DES-CBC-", "DES"),
        ("NULL", "NULL encryption"),
        ("EXP", "EXPORT grade"),
        ("ADH", "anonymous (no server authentication)"),
        ("AECDH", "anonymous (no server authentication)"),
        ("ANON", "anonymous (no server authentication)"),
    )
    for needle, reason in checks:
        if needle in name:
            return reason
    if (
        name.startswith("DES-")
        or name.startswith("EDH-RSA-DES-")
        or name.startswith("EDH-DSS-DES-")
    ):
        return "DES"
    return None


def has_forward_secrecy(version: str, cipher: str) -> bool:
    """TLS 1.3 always; earlier versions when the key exchange is ephemeral (EC)DHE."""
    if version == "TLSv1.3":
        return True
    name = cipher.upper()
    return any(k in name for k in ("ECDHE", "DHE", "EDH"))


def version_below_12(version: str) -> bool:
    return _VERSION_RANK.get(version, 99) < _VERSION_RANK["TLSv1.2"] or version.startswith("SSL")


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
    from .smtp import prepare_tls, smtp_connection, throttle_findings

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
    from .smtp import Transcript

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
    from .smtp import Transcript

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
    from .smtp import Transcript, prepare_tls, smtp_connection, throttle_findings

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


# OpenSSL reason codes a helpdesk engineer should not have to decode.
_REASONS = {
    "WRONG_VERSION_NUMBER": "the server answered with something that is not TLS",
    "UNSUPPORTED_PROTOCOL": "no protocol version in common",
    "TLSV1_ALERT_PROTOCOL_VERSION": "the server refuses the offered protocol version",
    "NO_PROTOCOLS_AVAILABLE": "this host cannot offer the protocol version",
    "NO_CIPHERS_AVAILABLE": "no cipher in common",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "the server found nothing in common with this client",
    "UNEXPECTED_EOF_WHILE_READING": "connection closed during the handshake",
    "UNEXPECTED_MESSAGE": "the server sent a message out of order",
    "RECORD_LAYER_FAILURE": "the server sent data that is not a valid TLS record",
}


def describe_handshake_error(
    exc: BaseException, recorder: HandshakeRecorder, timeout: float
) -> tuple[str, bool]:
    """A one-line reason for a failed handshake, and whether it was a timeout.

    The alert the server sent says most (handshake_failure, protocol_version...); OpenSSL's
    reason code says the rest (WRONG_VERSION_NUMBER when the server answered in clear text,
    UNSUPPORTED_PROTOCOL, NO_PROTOCOLS_AVAILABLE when this host cannot offer the version).
    """
    parts: list[str] = []
    timed_out = False
    if recorder.alert_received:
        parts.append(f"server sent alert {recorder.alert_received}")
    elif recorder.alert_sent:
        parts.append(f"we sent alert {recorder.alert_sent}")
    text = str(exc)
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "reason", None)
        code = str(reason) if reason else text or type(exc).__name__
        plain = _REASONS.get(code)
        parts.append(f"{plain} ({code})" if plain else code)
    elif isinstance(exc, ConnectionResetError):
        parts.append("connection reset during the handshake")
    elif "taking longer" in text or isinstance(exc, TimeoutError):
        timed_out = True
        parts.append(f"no handshake answer within {timeout:.1f} s")
    elif isinstance(exc, EOFError) and text:
        parts.append(text)
    elif isinstance(exc, (ConnectionError, EOFError)):
        parts.append("connection closed during the handshake")
    else:
        parts.append(text or type(exc).__name__)
    if recorder.client_hello_sent and not recorder.server_hello_seen and not timed_out:
        parts.append("no ServerHello received")
    return "; ".join(parts), timed_out
