"""The TLS primitives of probes/net/tls.py: the parsers of handshake messages, cipher
judgements, SNI and the client context (pure: no sockets)."""

from __future__ import annotations

import ssl

from probes.net.tls import (
    build_client_context,
    has_forward_secrecy,
    parse_certificate_message,
    parse_server_hello,
    parse_server_key_exchange,
    server_hello_version,
    sni_for,
    weak_cipher_reason,
)


def _server_hello(group: int | None, *, hrr: bool = False) -> bytes:
    random = (
        bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
        if hrr
        else bytes(range(32))
    )
    exts = b"\x00\x2b\x00\x02\x03\x04"  # supported_versions: TLS 1.3
    if group is not None:
        share = group.to_bytes(2, "big") + (b"" if hrr else b"\x00\x20" + b"k" * 32)
        exts += b"\x00\x33" + len(share).to_bytes(2, "big") + share
    body = b"\x03\x03" + random + b"\x20" + b"s" * 32 + b"\x13\x02" + b"\x00"
    body += len(exts).to_bytes(2, "big") + exts
    return b"\x02" + len(body).to_bytes(3, "big") + body


def test_parse_server_hello_groups() -> None:
    assert parse_server_hello(_server_hello(29)) == (False, 29)
    assert parse_server_hello(_server_hello(24)) == (False, 24)
    assert parse_server_hello(_server_hello(0x11EC, hrr=True)) == (True, 0x11EC)
    assert parse_server_hello(_server_hello(None)) == (False, None)
    # Truncated or garbage input degrades to "unknown", never an exception.
    assert parse_server_hello(_server_hello(29)[:20]) == (False, None)
    assert parse_server_hello(b"") == (False, None)


def test_parse_server_key_exchange() -> None:
    ecdhe = b"\x0c\x00\x00\x45" + b"\x03\x00\x17" + b"\x41" + b"p" * 65
    assert parse_server_key_exchange(ecdhe, "ECDHE-RSA-AES128-GCM-SHA256") == "secp256r1"
    ffdhe_prime = bytes.fromhex("ffffffffffffffffadf85458a2bb4a9a") + b"\x55" * 240
    dhe = b"\x0c\x00\x01\x00" + len(ffdhe_prime).to_bytes(2, "big") + ffdhe_prime + b"\x00\x01\x02"
    assert parse_server_key_exchange(dhe, "DHE-RSA-AES256-GCM-SHA384") == "ffdhe2048"
    other = b"\x80" + b"\x11" * 127
    dh = b"\x0c\x00\x00\x90" + len(other).to_bytes(2, "big") + other
    assert parse_server_key_exchange(dh, "DHE-RSA-AES128-SHA") == "dh1024"
    assert parse_server_key_exchange(b"\x0c\x00\x00\x00", "ECDHE-RSA-AES128-SHA") is None
    assert parse_server_key_exchange(ecdhe, "AES128-GCM-SHA256") is None


def test_cipher_judgements() -> None:
    assert weak_cipher_reason("DES-CBC3-SHA") == "3DES"
    assert weak_cipher_reason("ECDHE-RSA-DES-CBC3-SHA") == "3DES"
    assert weak_cipher_reason("RC4-SHA") == "RC4"
    assert weak_cipher_reason("AECDH-AES128-SHA") is not None
    assert weak_cipher_reason("ADH-AES256-GCM-SHA384") is not None
    assert weak_cipher_reason("NULL-SHA256") is not None
    assert weak_cipher_reason("EXP-RC2-CBC-MD5") is not None
    assert weak_cipher_reason("ECDHE-RSA-AES256-GCM-SHA384") is None
    assert weak_cipher_reason("TLS_AES_256_GCM_SHA384") is None
    assert weak_cipher_reason("TLS_CHACHA20_POLY1305_SHA256") is None

    assert has_forward_secrecy("TLSv1.3", "TLS_AES_128_GCM_SHA256")
    assert has_forward_secrecy("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256")
    assert has_forward_secrecy("TLSv1.2", "DHE-RSA-AES128-GCM-SHA256")
    assert not has_forward_secrecy("TLSv1.2", "AES256-GCM-SHA384")
    assert not has_forward_secrecy("TLSv1", "DES-CBC3-SHA")


def test_sni_and_context() -> None:
    assert sni_for("mx.example.org.") == "mx.example.org"
    assert sni_for("192.0.2.1") is None
    assert sni_for("2001:db8::1") is None
    assert sni_for("[2001:db8::1]") is None
    ctx = build_client_context()
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1
    pinned = build_client_context(version="TLSv1.2")
    assert pinned.minimum_version == pinned.maximum_version == ssl.TLSVersion.TLSv1_2


# A failed handshake keeps its evidence (issue 10 item 7): the chain and the chosen version.
DER_A = b"\x30\x03\x02\x01\x01"
DER_B = b"\x30\x03\x02\x01\x02"


def _u24(n: int) -> bytes:
    return n.to_bytes(3, "big")


def test_certificate_message_layouts() -> None:
    # TLS 1.2: a list of (length, DER).
    entries = b"".join(_u24(len(d)) + d for d in (DER_A, DER_B))
    body12 = _u24(len(entries)) + entries
    msg12 = b"\x0b" + _u24(len(body12)) + body12
    assert parse_certificate_message(msg12) == [DER_A, DER_B]
    # TLS 1.3: an empty request context, then (length, DER, extensions) per entry.
    entries13 = b"".join(_u24(len(d)) + d + b"\x00\x00" for d in (DER_A, DER_B))
    body13 = b"\x00" + _u24(len(entries13)) + entries13
    msg13 = b"\x0b" + _u24(len(body13)) + body13
    assert parse_certificate_message(msg13) == [DER_A, DER_B]
    # Garbage and truncation give nothing rather than a wrong chain.
    assert parse_certificate_message(msg12[:-2]) == []
    assert parse_certificate_message(b"\x0b\x00\x00\x01\xff") == []


def test_server_hello_version_reads_supported_versions() -> None:
    random = bytes(32)
    ext = (43).to_bytes(2, "big") + (2).to_bytes(2, "big") + (0x0304).to_bytes(2, "big")
    body = (
        b"\x03\x03" + random + b"\x00" + b"\x13\x01" + b"\x00" + len(ext).to_bytes(2, "big") + ext
    )
    assert server_hello_version(b"\x02" + _u24(len(body)) + body) == "TLSv1.3"
    plain = b"\x03\x03" + random + b"\x00" + b"\xc0\x2b" + b"\x00"
    assert server_hello_version(b"\x02" + _u24(len(plain)) + plain) == "TLSv1.2"
