"""A failed handshake keeps its evidence: the version the server chose and the chain it sent
before the alert, and "no version in common" is told apart from "the handshake fails after
the server chose a version" (item 7 of issue 10).

The servers are the lab's SMTP server on loopback; the client is the real session code."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import pytest

from mxlens_lab.smtp_server import Behaviour, SmtpServer
from probes.checks.session import smtp_session
from probes.model.events import ChainReceived, Event, FindingRaised, Where
from probes.model.options import Options
from probes.net.tls import parse_certificate_message, server_hello_version

HOST = "127.0.0.1"
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


@pytest.fixture
async def servers() -> AsyncIterator[list[SmtpServer]]:
    started: list[SmtpServer] = []
    yield started
    for s in started:
        await s.stop()


async def _session(servers: list[SmtpServer], **behaviour: object) -> list[Event]:
    server = SmtpServer(HOST, 0, Behaviour(**behaviour))  # type: ignore[arg-type]
    await server.start()
    servers.append(server)
    where = Where("mx.lab.test", HOST, server.port)
    options = Options(port=server.port, timeout=3.0)
    return [e async for e in smtp_session(where, options, purpose="main", ehlo_name="c.test")]


@pytest.mark.lab
@pytest.mark.parametrize("tls_max", [ssl.TLSVersion.TLSv1_2, None], ids=["tls12", "tls13"])
async def test_a_handshake_that_fails_after_the_certificate_keeps_the_chain(
    servers: list[SmtpServer], tls_max: ssl.TLSVersion | None
) -> None:
    events = await _session(servers, handshake_fail="after-certificate", tls_max=tls_max)
    chains = [e for e in events if isinstance(e, ChainReceived)]
    assert len(chains) == 1 and len(chains[0].certs) == 1  # the throwaway self-signed leaf
    assert "mx.lab.test" in chains[0].certs[0].subject
    (finding,) = [e.finding for e in events if isinstance(e, FindingRaised)]
    assert finding.id == "tls.handshake_failed"
    version = "TLSv1.2" if tls_max else "TLSv1.3"
    assert f"the server had chosen {version} and sent its certificate chain (1 certificate)" in (
        finding.summary
    )
    assert "no version mismatch" in finding.summary
    if tls_max:
        assert "internal_error" in finding.summary  # the alert the server sent


def test_no_version_in_common_is_told_from_a_failure_after_the_hello() -> None:
    from types import SimpleNamespace
    from typing import cast

    from probes.checks.session import handshake_failure
    from probes.net.smtp import SmtpConnection

    def conn(**kw: object) -> SmtpConnection:
        base: dict[str, object] = {
            "tls_error": "server sent alert protocol_version; TLSV1_ALERT_PROTOCOL_VERSION",
            "failed_version": None,
            "failed_chain": [],
            "failed_before_hello": True,
        }
        base.update(kw)
        return cast(SmtpConnection, SimpleNamespace(**base))

    assert "no TLS version in common" in handshake_failure(conn())
    after = handshake_failure(
        conn(
            tls_error="server sent alert internal_error; TLSV1_ALERT_INTERNAL_ERROR",
            failed_version="TLSv1.2",
            failed_chain=[DER_A, DER_B],
            failed_before_hello=False,
        )
    )
    assert "no version mismatch" in after and "(2 certificates)" in after
    assert "version in common" not in after
    # A reset before any answer is neither: the reason stays as it was.
    assert handshake_failure(conn(tls_error="connection reset during the handshake")) == (
        "connection reset during the handshake"
    )
