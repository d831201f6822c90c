"""What a TLS client offered and what we answered, read from the raw handshake records.

pyOpenSSL has no message callback, but the memory-BIO pump in the listener sees every byte:
the ClientHello and our ServerHello (and, up to TLS 1.2, our ServerKeyExchange) travel in
clear text, so the offer and the negotiated group are parsed from them directly.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from functools import lru_cache

from probes.net.tls import (
    group_name,
    hello_extensions,
    parse_server_hello,
    parse_server_key_exchange,
)

_CT_HANDSHAKE = 22
_VERSIONS = {
    0x0300: "SSLv3",
    0x0301: "TLSv1",
    0x0302: "TLSv1.1",
    0x0303: "TLSv1.2",
    0x0304: "TLSv1.3",
}


def _grease(code: int) -> bool:
    # RFC 8701: values of the form 0x?A?A are never real; clients send them to keep servers honest.
    return (code & 0x0F0F) == 0x0A0A and (code >> 8) == (code & 0xFF)


@lru_cache(maxsize=1)
def _suite_names() -> dict[int, str]:
    """IANA cipher suite code -> OpenSSL's name, for every suite this OpenSSL knows."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.set_ciphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    names: dict[int, str] = {
        0x00FF: "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
        0x5600: "TLS_FALLBACK_SCSV",
    }
    for entry in ctx.get_ciphers():
        names[int(entry["id"]) & 0xFFFF] = str(entry["name"])
    return names


def suite_name(code: int) -> str:
    return _suite_names().get(code, f"0x{code:04x}")


def version_name(code: int) -> str:
    return _VERSIONS.get(code, f"0x{code:04x}")


@dataclass(frozen=True)
class HelloOffer:
    """What the client offered: versions (newest first, as sent), suites, groups, SNI."""

    versions: tuple[str, ...]
    suites: tuple[str, ...]
    groups: tuple[str, ...]
    sni: str | None
    signature_algorithms: int  # how many were offered
    alpn: tuple[str, ...] = ()


def handshake_messages(data: bytes) -> tuple[list[bytes], bool]:
    """The complete handshake messages (each with its 4-byte header) in the clear-text
    records at the start of data, and whether anything else (a ChangeCipherSpec, encrypted
    records, a torn record) came after them."""
    stream = b""
    pos = 0
    rest = False
    while pos + 5 <= len(data):
        ctype = data[pos]
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        if pos + 5 + length > len(data):
            rest = True
            break
        if ctype != _CT_HANDSHAKE:
            rest = True
            break
        stream += data[pos + 5 : pos + 5 + length]
        pos += 5 + length
    messages: list[bytes] = []
    at = 0
    while at + 4 <= len(stream):
        mlen = int.from_bytes(stream[at + 1 : at + 4], "big")
        if at + 4 + mlen > len(stream):
            break
        messages.append(stream[at : at + 4 + mlen])
        at += 4 + mlen
    return messages, rest


def parse_client_hello(msg: bytes) -> HelloOffer | None:
    """A ClientHello handshake message (with its header) -> HelloOffer; None if it is not one
    or is too short to read. Extensions that do not parse are skipped, not fatal."""
    if len(msg) < 4 or msg[0] != 1:
        return None
    body = msg[4:]
    try:
        legacy = int.from_bytes(body[0:2], "big")
        pos = 34
        pos += 1 + body[pos]  # session id
        slen = int.from_bytes(body[pos : pos + 2], "big")
        raw_suites = body[pos + 2 : pos + 2 + slen]
        pos += 2 + slen
        pos += 1 + body[pos]  # compression methods
    except IndexError:
        return None
    codes = [int.from_bytes(raw_suites[i : i + 2], "big") for i in range(0, len(raw_suites) - 1, 2)]
    suites = tuple(suite_name(c) for c in codes if not _grease(c))
    versions: tuple[str, ...] = (version_name(legacy),)
    groups: tuple[str, ...] = ()
    sni: str | None = None
    sigalgs = 0
    alpn: tuple[str, ...] = ()
    for etype, ext in hello_extensions(body, pos):
        if etype == 0 and len(ext) >= 5:  # server_name: list of (type, name)
            nlen = int.from_bytes(ext[3:5], "big")
            if ext[2] == 0:
                sni = ext[5 : 5 + nlen].decode("ascii", "replace")
        elif etype == 10 and len(ext) >= 2:  # supported_groups
            items = ext[2 : 2 + int.from_bytes(ext[:2], "big")]
            codes = [int.from_bytes(items[i : i + 2], "big") for i in range(0, len(items) - 1, 2)]
            groups = tuple(group_name(c) for c in codes if not _grease(c))
        elif etype == 43 and len(ext) >= 1:  # supported_versions
            items = ext[1 : 1 + ext[0]]
            codes = [int.from_bytes(items[i : i + 2], "big") for i in range(0, len(items) - 1, 2)]
            versions = tuple(version_name(c) for c in codes if not _grease(c))
        elif etype == 13 and len(ext) >= 2:  # signature_algorithms
            sigalgs = int.from_bytes(ext[:2], "big") // 2
        elif etype == 16 and len(ext) >= 2:  # ALPN
            items = ext[2 : 2 + int.from_bytes(ext[:2], "big")]
            names: list[str] = []
            i = 0
            while i < len(items):
                n = items[i]
                names.append(items[i + 1 : i + 1 + n].decode("ascii", "replace"))
                i += 1 + n
            alpn = tuple(names)
    return HelloOffer(versions, suites, groups, sni, sigalgs, alpn)


def negotiated_group(server_flight: bytes, version: str | None, cipher: str | None) -> str | None:
    """The key-exchange group we chose, from our own first flight: the TLS 1.3 ServerHello's
    key_share, or the TLS 1.2 ServerKeyExchange."""
    messages, _ = handshake_messages(server_flight)
    for msg in messages:
        if msg[0] == 2 and version == "TLSv1.3":
            _, group = parse_server_hello(msg)
            return group_name(group) if group is not None else None
        if msg[0] == 12 and cipher:
            return parse_server_key_exchange(msg, cipher)
    return None
