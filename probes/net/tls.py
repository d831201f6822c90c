"""TLS primitives for the SMTP probes: client contexts, the handshake recorder, the chain.

net/smtp.py stays about SMTP; everything that knows TLS internals lives here: how a diagnostic
client context is built (no verification, legacy versions and weak ciphers allowed so broken
servers still complete and can be judged), how handshake messages are read from OpenSSL's
message callback, and how the chain is taken from an `ssl.SSLObject` on every Python version.
The probes that need connections of their own are in checks/side_probes.py.
"""

from __future__ import annotations

import ssl
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from probes.model.names import is_ip_literal

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
        # What the server chose and sent before any failure: a handshake that fails after
        # the server's Certificate still shows its chain (as s_client and testssl do).
        self.server_version: str | None = None
        self.certificates: list[bytes] = []

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
                else:
                    self.server_version = server_hello_version(data) or self.server_version
                if group is not None:
                    self._hello_group = group
            if msg_type == 11 and direction == "read" and not self.certificates:
                self.certificates = parse_certificate_message(data)
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
    for etype, edata in hello_extensions(body, pos):
        if etype == 51 and len(edata) >= 2:  # key_share
            return hrr, int.from_bytes(edata[:2], "big")
    return hrr, None


def hello_extensions(body: bytes, pos: int) -> Iterator[tuple[int, bytes]]:
    """(type, data) of each extension of a ClientHello or ServerHello body whose extensions
    length starts at `pos`; none when the body ends before it. A length that runs past the
    end is cut at the end, never raised on: peers' hellos are parsed as they come."""
    if pos + 2 > len(body):
        return
    end = min(len(body), pos + 2 + int.from_bytes(body[pos : pos + 2], "big"))
    pos += 2
    while pos + 4 <= end:
        etype = int.from_bytes(body[pos : pos + 2], "big")
        elen = int.from_bytes(body[pos + 2 : pos + 4], "big")
        yield etype, body[pos + 4 : pos + 4 + elen]
        pos += 4 + elen


_WIRE_VERSIONS = {0x0301: "TLSv1", 0x0302: "TLSv1.1", 0x0303: "TLSv1.2", 0x0304: "TLSv1.3"}


def server_hello_version(msg: bytes) -> str | None:
    """The version a ServerHello (with its 4-byte header) chose: its supported_versions
    extension (TLS 1.3), else its legacy version field."""
    body = msg[4:]
    if len(body) < 35:
        return None
    chosen = _WIRE_VERSIONS.get(int.from_bytes(body[0:2], "big"))
    pos = 34
    sid_len = body[pos]
    pos += 1 + sid_len + 2 + 1
    for etype, edata in hello_extensions(body, pos):
        if etype == 43 and len(edata) == 2:  # supported_versions (RFC 8446 4.2.1)
            return _WIRE_VERSIONS.get(int.from_bytes(edata, "big"), chosen)
    return chosen


def parse_certificate_message(msg: bytes) -> list[bytes]:
    """The DER certificates of a Certificate handshake message (with its 4-byte header), in
    the order sent; [] when it is neither a TLS 1.3 nor a TLS 1.0-1.2 layout that adds up.
    TLS 1.3 (RFC 8446 4.4.2) adds a request context before the list and extensions after
    each entry; the sizes decide which layout it is."""
    body = msg[4:]

    def entries(data: bytes, with_extensions: bool) -> list[bytes] | None:
        if len(data) < 3 or int.from_bytes(data[:3], "big") != len(data) - 3:
            return None
        out: list[bytes] = []
        pos = 3
        while pos < len(data):
            if pos + 3 > len(data):
                return None
            size = int.from_bytes(data[pos : pos + 3], "big")
            der = data[pos + 3 : pos + 3 + size]
            if len(der) != size or not der.startswith(b"\x30"):
                return None
            out.append(bytes(der))
            pos += 3 + size
            if with_extensions:
                if pos + 2 > len(data):
                    return None
                pos += 2 + int.from_bytes(data[pos : pos + 2], "big")
        return out if pos == len(data) else None

    if body:
        context = body[0]
        tls13 = entries(body[1 + context :], True)
        if tls13:
            return tls13
    return entries(body, False) or []


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
            # OpenSSL's message callback has no public Python API; CPython's test suite uses the same hook.
            setattr(ctx, "_msg_callback", recorder.callback)  # noqa: B010
        except (AttributeError, NotImplementedError, TypeError):
            pass  # no transcript of handshake messages and no group on this Python
    return ctx


@dataclass(frozen=True)
class TlsOffer:
    """What a ClientHello offers: a version range and the TLS <= 1.2 suites (None: all).
    The key of the context pool, so each configuration is built once per process."""

    minimum: str | None = None  # None: TLS 1.0, the oldest a diagnosis offers
    maximum: str | None = None  # None: the newest this OpenSSL has
    ciphers: str | None = None


# Contexts not in use, per offer. A context carries the handshake recorder of the connection
# that holds it (OpenSSL's message callback is per context), so two connections never share
# one at the same time: a connection leases a context and gives it back when it closes.
_IDLE: dict[TlsOffer, list[ssl.SSLContext]] = {}
_built = 0


def contexts_built() -> int:
    """How many client contexts this process has built (benchmarks and tests read it)."""
    return _built


def lease_context(offer: TlsOffer, recorder: HandshakeRecorder | None) -> ssl.SSLContext:
    """A client context for `offer`, idle from an earlier connection or newly built, with
    `recorder` receiving its handshake messages. Give it back with release_context()."""
    global _built
    idle = _IDLE.get(offer)
    if idle:
        ctx = idle.pop()
        _set_recorder(ctx, recorder)
        return ctx
    _built += 1
    if offer.minimum is not None and offer.minimum == offer.maximum:
        return build_client_context(version=offer.minimum, recorder=recorder, ciphers=offer.ciphers)
    ctx = build_client_context(recorder=recorder, ciphers=offer.ciphers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if offer.minimum is not None:
            ctx.minimum_version = _VERSION_ENUM[offer.minimum]
        if offer.maximum is not None:
            ctx.maximum_version = _VERSION_ENUM[offer.maximum]
    return ctx


def release_context(offer: TlsOffer, ctx: ssl.SSLContext) -> None:
    _set_recorder(ctx, None)
    _IDLE.setdefault(offer, []).append(ctx)


def _set_recorder(ctx: ssl.SSLContext, recorder: HandshakeRecorder | None) -> None:
    try:
        ctx._msg_callback = recorder.callback if recorder is not None else None  # type: ignore[attr-defined]
    except (AttributeError, NotImplementedError, TypeError):
        pass  # no transcript of handshake messages on this Python


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
