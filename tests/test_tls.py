"""The TLS helpers and the two extra probes (version sweep, STARTTLS injection) against real
servers on 127.0.0.1; the pure parsers of handshake messages are unit-tested directly."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from probes.checks.side_probes import starttls_injection_test, tls_version_sweep
from probes.model.events import (
    SessionFinished,
    SessionStarted,
    TlsVersionsProbed,
    TranscriptLine,
    Where,
)
from probes.model.options import Options
from probes.net.tls import (
    build_client_context,
    has_forward_secrecy,
    parse_server_hello,
    parse_server_key_exchange,
    sni_for,
    weak_cipher_reason,
)
from tests.support.collect import gather
from tests.support.smtp import (
    FakeSmtp,
    evidence_line,
    findings,
    finished,
    server_context,
    smtp_script,
    transcript,
)

OPTIONS = Options(timeout=1.0)


def _sweep_result(events: list) -> dict[str, bool | None]:
    probed = [e for e in events if isinstance(e, TlsVersionsProbed)]
    assert len(probed) == 1
    return dict(probed[0].accepted)


# --------------------------------------------------------------------------- version sweep


async def test_sweep_tls12_only(
    serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]
) -> None:
    ctx = server_context(cert_files, maximum=ssl.TLSVersion.TLSv1_2)
    server = serve(smtp_script(tls_ctx=ctx))
    events = await gather(tls_version_sweep(server.where(), OPTIONS, ehlo_name="client.test"))

    assert isinstance(events[0], SessionStarted) and events[0].purpose == "tls-versions"
    assert all(e.purpose == "tls-versions" for e in events if isinstance(e, TranscriptLine))
    result = _sweep_result(events)
    assert result["TLSv1.2"] is True
    assert result["TLSv1.3"] is False
    # The server's context refuses 1.0/1.1 (Python's server default minimum is 1.2).
    assert result["TLSv1"] in (False, None) and result["TLSv1.1"] in (False, None)
    found = findings(events)
    assert set(found) == {"tls.no_tls13"}
    assert "handshake failed" in evidence_line(events, "tls.no_tls13").text
    end = finished(events)
    assert end.purpose == "tls-versions" and end.outcome == "ok"
    # One connection per version, one after the other, never two at once.
    assert server.connections == end.connections == 4
    assert server.max_open == 1


async def test_sweep_modern_server_has_no_findings(
    serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]
) -> None:
    server = serve(smtp_script(tls_ctx=server_context(cert_files)))
    events = await gather(tls_version_sweep(server.where(), OPTIONS, ehlo_name="client.test"))
    result = _sweep_result(events)
    assert result["TLSv1.2"] is True and result["TLSv1.3"] is True
    assert findings(events) == {}


async def test_sweep_legacy_accepted(
    serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]
) -> None:
    ctx = server_context(cert_files, minimum=ssl.TLSVersion.TLSv1, legacy=True)
    server = serve(smtp_script(tls_ctx=ctx))
    events = await gather(tls_version_sweep(server.where(), OPTIONS, ehlo_name="client.test"))
    result = _sweep_result(events)
    if result["TLSv1"] is not True:
        pytest.skip("this OpenSSL does not complete TLSv1 handshakes even at SECLEVEL=0")
    assert set(findings(events)) == {"tls.legacy_accepted"}
    assert "TLSv1" in findings(events)["tls.legacy_accepted"].finding.summary


async def test_sweep_without_starttls_tests_nothing(serve: Callable[..., FakeSmtp]) -> None:
    server = serve(smtp_script(ehlo=b"250 mx.test\r\n"))
    events = await gather(tls_version_sweep(server.where(), OPTIONS, ehlo_name="client.test"))
    assert set(_sweep_result(events).values()) == {None}
    assert findings(events) == {}
    assert finished(events).outcome == "starttls"
    assert server.connections == 1  # gave up after the first connection


# --------------------------------------------------------------------------- injection


async def test_injection_vulnerable(
    serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]
) -> None:
    server = serve(smtp_script(tls_ctx=server_context(cert_files), keep_buffer=True))
    events = await gather(starttls_injection_test(server.where(), OPTIONS, ehlo_name="client.test"))
    assert isinstance(events[0], SessionStarted) and events[0].purpose == "injection"
    assert set(findings(events)) == {"tls.plaintext_injection"}
    line = evidence_line(events, "tls.plaintext_injection")
    assert line.dir == "S" and line.text == "250 2.0.0 OK"
    texts = [t.text for t in transcript(events)]
    # Both commands went out together, in clear text, before the handshake.
    assert texts.index("NOOP") == texts.index("STARTTLS") + 1
    assert texts.index("NOOP") < texts.index("-> ClientHello") < texts.index("250 2.0.0 OK")
    assert finished(events).outcome == "ok"


async def test_injection_not_vulnerable(
    serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]
) -> None:
    server = serve(smtp_script(tls_ctx=server_context(cert_files), keep_buffer=False))
    start = time.monotonic()
    events = await gather(starttls_injection_test(server.where(), OPTIONS, ehlo_name="client.test"))
    assert time.monotonic() - start < OPTIONS.timeout + 3
    assert findings(events) == {}
    texts = [t.text for t in transcript(events)]
    assert any("not vulnerable" in t for t in texts)
    end = finished(events)
    assert isinstance(end, SessionFinished) and end.outcome == "ok" and end.starttls is True


# --------------------------------------------------------------------------- pure helpers


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


async def test_sweep_unreachable_reports_none() -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    events = await gather(
        tls_version_sweep(Where("mx.test", "127.0.0.1", port), OPTIONS, ehlo_name="client.test")
    )
    assert set(_sweep_result(events).values()) == {None}
    assert finished(events).outcome == "connect"
