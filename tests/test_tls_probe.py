"""The TLS helpers and the side probes (cipher probe, legacy probe, STARTTLS injection)
against real servers on 127.0.0.1; the pure parsers of handshake messages are unit-tested
directly."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from probes.checks.side_probes import MainFacts, side_probes
from probes.model.events import (
    Event,
    SessionFinished,
    SideProbeChecked,
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
from tests import test_smtp_session as base
from tests.test_smtp_session import (
    FakeSmtp,
    collect,
    findings,
    server_context,
    smtp_script,
)

# The fixtures live with the session tests; binding them here makes pytest find them.
serve = base.serve
cert_files = base.cert_files

OPTIONS = Options(timeout=1.0)
TLS13 = MainFacts("TLSv1.3", "TLS_AES_256_GCM_SHA384", 9, key_type="RSA")
TLS12 = MainFacts("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384", 9, key_type="RSA")


def _versions(events: list[Event]) -> dict[str, bool | None]:
    probed = [e for e in events if isinstance(e, TlsVersionsProbed)]
    assert len(probed) == 1
    return dict(probed[0].accepted)


def _results(events: list[Event]) -> dict[str, str]:
    return {e.check: e.result for e in events if isinstance(e, SideProbeChecked)}


def _lines(events: list[Event], purpose: str) -> list[TranscriptLine]:
    return [e for e in events if isinstance(e, TranscriptLine) and e.purpose == purpose]


def _ends(events: list[Event]) -> dict[str, SessionFinished]:
    return {e.purpose: e for e in events if isinstance(e, SessionFinished)}


async def probe(server: FakeSmtp, main: MainFacts = TLS13) -> list[Event]:
    return await collect(side_probes(server.where(), OPTIONS, ehlo_name="client.test", main=main))


# --------------------------------------------------------------------------- versions


async def test_tls12_only_server(
    serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]
) -> None:
    ctx = server_context(cert_files, maximum=ssl.TLSVersion.TLSv1_2)
    server = serve(smtp_script(tls_ctx=ctx))
    # The main session got TLS 1.2 although it offered 1.3: 1.3 is refused.
    events = await probe(server, TLS12)
    result = _versions(events)
    assert result["TLSv1.2"] is True and result["TLSv1.3"] is False
    # The server's context refuses 1.0/1.1 (Python's server default minimum is 1.2).
    assert result["TLSv1"] in (False, None) and result["TLSv1.1"] in (False, None)
    assert set(findings(events)) == {"tls.no_tls13"}
    assert findings(events)["tls.no_tls13"].finding.evidence == ("transcript:9",)
    assert set(_ends(events)) == {"cipher-probe", "tls-versions", "injection"}
    # One connection per probe, at most three at once.
    assert server.connections == 3 and server.max_open <= 3


async def test_modern_server_has_no_findings(
    serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]
) -> None:
    server = serve(smtp_script(tls_ctx=server_context(cert_files)))
    events = await probe(server)
    result = _versions(events)
    assert result["TLSv1.3"] is True and result["TLSv1.1"] is False
    assert findings(events) == {}
    assert _results(events) == {
        "static-rsa": "not vulnerable",
        "weak-suites": "not vulnerable",
        "legacy-tls": "not vulnerable",
        "injection": "not vulnerable",
    }


async def test_legacy_accepted(
    serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]
) -> None:
    ctx = server_context(cert_files, minimum=ssl.TLSVersion.TLSv1, legacy=True)
    server = serve(smtp_script(tls_ctx=ctx))
    events = await probe(server)
    result = _versions(events)
    if result["TLSv1.1"] is not True:
        pytest.skip("this OpenSSL does not complete TLSv1.1 handshakes even at SECLEVEL=0")
    assert set(findings(events)) == {"tls.legacy_accepted"}
    assert "TLSv1.1" in findings(events)["tls.legacy_accepted"].finding.summary
    assert _results(events)["legacy-tls"] == "vulnerable"
    assert any(
        line.text == "connection 1: offering TLSv1 to TLSv1.1 only"
        for line in _lines(events, "tls-versions")
    )


async def test_without_starttls_nothing_is_tested(serve: Callable[..., FakeSmtp]) -> None:
    server = serve(smtp_script(ehlo=b"250 mx.test\r\n"))
    events = await probe(server)
    result = _versions(events)
    assert result["TLSv1.3"] is True  # the main session's own handshake
    assert result["TLSv1"] is result["TLSv1.1"] is result["TLSv1.2"] is None
    assert findings(events) == {}
    assert set(_results(events).values()) == {"inconclusive"}
    assert {e.outcome for e in _ends(events).values()} == {"starttls"}


# --------------------------------------------------------------------------- injection


async def test_injection_vulnerable(
    serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]
) -> None:
    server = serve(smtp_script(tls_ctx=server_context(cert_files), keep_buffer=True))
    events = await probe(server)
    assert set(findings(events)) == {"tls.plaintext_injection"}
    lines = _lines(events, "injection")
    ref = findings(events)["tls.plaintext_injection"].finding.evidence[0]
    line = lines[int(ref.split(":")[1])]
    assert line.dir == "S" and line.text == "250 2.0.0 OK"
    texts = [t.text for t in lines]
    # Both commands went out together, in clear text, before the handshake.
    assert texts.index("NOOP") == texts.index("STARTTLS") + 1
    assert texts.index("NOOP") < texts.index("-> ClientHello") < texts.index("250 2.0.0 OK")
    assert _results(events)["injection"] == "vulnerable"
    assert _ends(events)["injection"].outcome == "ok"


async def test_injection_not_vulnerable(
    serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]
) -> None:
    server = serve(smtp_script(tls_ctx=server_context(cert_files), keep_buffer=False))
    start = time.monotonic()
    events = await probe(server)
    assert time.monotonic() - start < OPTIONS.timeout + 3
    assert findings(events) == {}
    texts = [t.text for t in _lines(events, "injection")]
    assert any("not vulnerable" in t for t in texts)
    end = _ends(events)["injection"]
    assert end.outcome == "ok" and end.starttls is True
    assert _results(events)["injection"] == "not vulnerable"


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


async def test_unreachable_reports_none() -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    events = await collect(
        side_probes(
            Where("mx.test", "127.0.0.1", port), OPTIONS, ehlo_name="client.test", main=TLS13
        )
    )
    result = _versions(events)
    assert result["TLSv1"] is result["TLSv1.1"] is result["TLSv1.2"] is None
    assert {e.outcome for e in _ends(events).values()} == {"connect"}
    assert set(_results(events).values()) == {"inconclusive"}
