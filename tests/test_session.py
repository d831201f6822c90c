"""smtp_session against small real SMTP servers on 127.0.0.1 (tests/support/smtp.py).

The servers are scripted to misbehave the way real ones do: no STARTTLS, 454, silence,
endless lines, hostile banners.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from mxlens_lab.smtp_server import Behaviour, SmtpServer
from probes.checks.session import handshake_failure, smtp_session
from probes.model.events import (
    ChainReceived,
    Event,
    FindingRaised,
    SessionStarted,
    TlsNegotiated,
    Waiting,
    Where,
)
from probes.model.options import Options
from probes.net.smtp import SmtpConnection
from tests.support.collect import gather
from tests.support.smtp import (
    EHLO_OK,
    FakeSmtp,
    Peer,
    evidence_line,
    findings,
    finished,
    raw_script,
    server_context,
    smtp_script,
    transcript,
)

OPTIONS = Options(timeout=1.0)


async def run(server: FakeSmtp, options: Options = OPTIONS) -> list[Event]:
    return await gather(smtp_session(server.where(), options, ehlo_name="client.test"))


# --------------------------------------------------------------------------- tests


async def test_healthy_starttls(
    serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]
) -> None:
    server = serve(smtp_script(tls_ctx=server_context(cert_files)))
    events = await run(server)

    assert isinstance(events[0], SessionStarted) and events[0].purpose == "main"
    end = finished(events)
    assert end.outcome == "ok" and end.starttls is True
    assert findings(events) == {}

    tls = next(e for e in events if isinstance(e, TlsNegotiated))
    assert tls.version == "TLSv1.3"
    assert tls.cipher.startswith("TLS_")
    assert tls.forward_secrecy is True
    assert tls.group in {"x25519", "secp256r1", "X25519MLKEM768", "x448", "secp384r1"}
    assert tls.sni == "mx.test"
    assert "<- ServerHello" in tls.handshake and "<- Certificate" in tls.handshake

    chain = next(e for e in events if isinstance(e, ChainReceived))
    assert len(chain.certs) == 2  # the intermediate as sent, not just the leaf
    assert "mx.test" in chain.certs[0].subject
    assert "mxlens-test-ca" in chain.certs[1].subject

    lines = transcript(events)
    dirs = [line.dir for line in lines]
    texts = [line.text for line in lines]
    assert dirs[:2] == ["S", "C"] and texts[0] == "220 mx.test ESMTP test"
    assert texts[1] == "EHLO client.test"
    starttls_at = texts.index("STARTTLS")
    assert texts[starttls_at + 1].startswith("220 2.0.0")
    assert texts[starttls_at + 2] == "-> ClientHello"
    done = next(i for i, t in enumerate(texts) if t.startswith("handshake done: "))
    assert dirs[starttls_at + 2 : done + 1] == ["TLS"] * (done - starttls_at - 1)
    assert texts[done] == f"handshake done: TLSv1.3 {tls.cipher} {tls.group}"
    assert texts[done + 1] == "EHLO client.test" and dirs[done + 1] == "C"
    assert "QUIT" in texts and texts[-1].startswith("221")
    times = [line.t_ms for line in lines]
    assert times == sorted(times)
    # Never a message: no MAIL, RCPT or DATA reached the server.
    sent = [c.split(b" ")[0].upper() for c in server.commands]
    assert sent == [b"EHLO", b"STARTTLS", b"EHLO", b"QUIT"]
    assert [line.index for line in lines] == list(range(len(lines)))
    # The reader says what it waits for, in order (the UI shows it while a server is silent).
    waits = [e.what for e in events if isinstance(e, Waiting)]
    assert waits[:5] == [
        "TCP connection",
        "greeting",
        "EHLO reply",
        "STARTTLS reply",
        "TLS handshake",
    ]


async def test_no_starttls(serve: Callable[..., FakeSmtp]) -> None:
    server = serve(smtp_script(ehlo=b"250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"))
    events = await run(server)
    assert set(findings(events)) == {"tls.starttls_not_offered"}
    assert evidence_line(events, "tls.starttls_not_offered").text == "250-mx.test"
    end = finished(events)
    assert end.outcome == "starttls" and end.starttls is False
    assert not any(isinstance(e, TlsNegotiated) for e in events)
    assert server.commands[-1] == b"QUIT"


async def test_starttls_refused(serve: Callable[..., FakeSmtp]) -> None:
    server = serve(
        smtp_script(starttls_reply=b"454 4.7.0 TLS not available due to local problem\r\n")
    )
    events = await run(server)
    assert set(findings(events)) == {"tls.starttls_refused"}
    assert evidence_line(events, "tls.starttls_refused").text.startswith("454 4.7.0")
    assert "454" in findings(events)["tls.starttls_refused"].finding.summary
    assert finished(events).outcome == "starttls"


async def test_starttls_421_is_rate_limit(serve: Callable[..., FakeSmtp]) -> None:
    server = serve(smtp_script(starttls_reply=b"421 4.7.0 Too many TLS sessions\r\n"))
    events = await run(server)
    assert set(findings(events)) == {"smtp.rate_limited"}
    assert finished(events).throttled  # the session says so itself: no TLS verdict


async def test_never_greets_times_out(serve: Callable[..., FakeSmtp]) -> None:
    server = serve(raw_script(then_wait=5.0))
    start = time.monotonic()
    events = await run(server)
    elapsed = time.monotonic() - start
    assert elapsed < OPTIONS.timeout + 5  # the step timeout fired, nothing waited longer
    assert set(findings(events)) == {"smtp.timeout"}
    line = evidence_line(events, "smtp.timeout")
    assert line.dir == "!" and line.text == "timeout waiting for the greeting after 1.0 s"
    assert finished(events).outcome == "greeting"


async def test_endless_line_stops(serve: Callable[..., FakeSmtp]) -> None:
    server = serve(raw_script(b"220 ", endless=b"x" * 8192))
    start = time.monotonic()
    events = await run(server, Options(timeout=20.0))
    # Stopped by the size cap, long before the 20 s step timeout.
    assert time.monotonic() - start < 10.0
    # The syntax warning, and the error: the greeting never completes, so no sender gets on.
    assert set(findings(events)) == {"smtp.malformed_reply", "smtp.timeout"}
    assert finished(events).outcome == "greeting"
    assert "longer than" in evidence_line(events, "smtp.malformed_reply").text


async def test_endless_continuation_lines_stop(serve: Callable[..., FakeSmtp]) -> None:
    server = serve(raw_script(endless=b"220-still greeting you\r\n" * 50))
    # The 100-line cap ends the reply, not the 5 s timeout: the evidence line says so.
    events = await run(server, Options(timeout=5.0))
    assert set(findings(events)) == {"smtp.malformed_reply", "smtp.timeout"}
    lines = transcript(events)
    assert sum(1 for line in lines if line.dir == "S") == 100
    assert "100 lines" in evidence_line(events, "smtp.malformed_reply").text


async def test_hostile_banner_kept_verbatim(
    serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]
) -> None:
    banner = b"220 mx.test \x1b[31mRED\x1b[0m \x1b]0;pwned\x07 [bold]x[/bold] \xff\xfe\xc3 end\r\n"
    server = serve(smtp_script(tls_ctx=server_context(cert_files), greeting=banner))
    events = await run(server)
    first = transcript(events)[0]
    assert first.dir == "S"
    assert (
        first.text
        == "220 mx.test \x1b[31mRED\x1b[0m \x1b]0;pwned\x07 [bold]x[/bold] \ufffd\ufffd\ufffd end"
    )
    assert finished(events).outcome == "ok"


async def test_greeting_554_rejected_and_421_rate_limited(serve: Callable[..., FakeSmtp]) -> None:
    rejected = serve(raw_script(b"554 5.7.1 No SMTP service here\r\n", then_wait=2))
    events = await run(rejected)
    assert set(findings(events)) == {"smtp.greeting_rejected"}
    assert finished(events).outcome == "greeting"
    assert not finished(events).throttled  # a refusal, not a throttle
    assert evidence_line(events, "smtp.greeting_rejected").text.startswith("554")

    throttled = serve(raw_script(b"421 4.7.0 mx.test Too many connections, try later\r\n"))
    events = await run(throttled)
    assert set(findings(events)) == {"smtp.rate_limited"}

    busy = serve(raw_script(b"554 5.7.1 rate limit exceeded for your network\r\n"))
    events = await run(busy)
    assert set(findings(events)) == {"smtp.rate_limited"}


async def test_ehlo_rejected(serve: Callable[..., FakeSmtp]) -> None:
    server = serve(smtp_script(ehlo=b"550 5.7.1 go away\r\n"))
    events = await run(server)
    assert set(findings(events)) == {"smtp.ehlo_rejected"}
    assert finished(events).outcome == "ehlo"


async def test_connect_refused() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    events = await gather(
        smtp_session(Where("mx.test", "127.0.0.1", port), OPTIONS, ehlo_name="client.test")
    )
    assert set(findings(events)) == {"smtp.connect_refused"}
    assert evidence_line(events, "smtp.connect_refused").dir == "!"
    assert finished(events).outcome == "connect"


async def test_closed_mid_dialogue(serve: Callable[..., FakeSmtp]) -> None:
    server = serve(raw_script(b"220 mx.test ESMTP\r\n"))  # greets, then hangs up
    events = await run(server)
    assert set(findings(events)) == {"smtp.timeout"}
    text = evidence_line(events, "smtp.timeout").text
    assert "closed by server" in text or "reset by server" in text  # a race on loopback
    assert finished(events).outcome == "ehlo"


async def test_malformed_reply_continues(
    serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]
) -> None:
    ehlo = b"250-mx.test\r\n251-MIXED\r\n250-" + b"Y" * 600 + b"\r\n250 STARTTLS\r\n"
    server = serve(smtp_script(tls_ctx=server_context(cert_files), ehlo=ehlo))
    events = await run(server)
    assert set(findings(events)) == {"smtp.malformed_reply"}
    summary = findings(events)["smtp.malformed_reply"].finding.summary
    assert "mixed codes" in summary
    assert finished(events).outcome == "ok"
    long_line = next(line for line in transcript(events) if line.text.startswith("250-YYY"))
    assert len(long_line.text) == 510


async def test_starttls_still_offered(
    serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]
) -> None:
    server = serve(smtp_script(tls_ctx=server_context(cert_files), ehlo_tls=EHLO_OK))
    events = await run(server)
    assert set(findings(events)) == {"tls.starttls_still_offered"}
    assert evidence_line(events, "tls.starttls_still_offered").text == "250-STARTTLS"
    assert finished(events).outcome == "ok"


async def test_starttls_still_offered_points_at_its_own_line(
    serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]
) -> None:
    # An empty continuation line ("250-") and bare-LF line ends before the keyword: the
    # evidence must still be the line that lists STARTTLS (lower case is the same keyword).
    ehlo_tls = b"250-mx.test Hello\n250-\n250-PIPELINING\n250-starttls\n250 8BITMIME\n"
    server = serve(smtp_script(tls_ctx=server_context(cert_files), ehlo_tls=ehlo_tls))
    events = await run(server)
    assert set(findings(events)) == {"tls.starttls_still_offered"}
    assert evidence_line(events, "tls.starttls_still_offered").text == "250-starttls"


async def test_handshake_failure_hang_up(serve: Callable[..., FakeSmtp]) -> None:
    server = serve(smtp_script(tls_ctx=None))  # says 220 to STARTTLS, then hangs up
    start = time.monotonic()
    events = await run(server, Options(timeout=20.0))
    assert time.monotonic() - start < 10.0  # seen at once, not after the step timeout
    assert set(findings(events)) == {"tls.handshake_failed"}
    line = evidence_line(events, "tls.handshake_failed")
    assert line.dir == "!" and line.text.startswith("handshake failed: ")
    assert "closed" in line.text or "reset" in line.text  # which one is a race
    assert finished(events).outcome == "handshake"


def _garbage_after_220(peer: Peer) -> None:
    peer.send(b"220 mx.test ESMTP\r\n")
    peer.readline()
    peer.send(EHLO_OK)
    peer.readline()
    peer.send(b"220 go ahead\r\n")
    peer.readline()  # the ClientHello (binary, but it has a newline somewhere or times out)
    peer.send(b"500 5.5.1 what is this?\r\n" * 4)
    time.sleep(0.5)


async def test_handshake_failure_plaintext_answer(serve: Callable[..., FakeSmtp]) -> None:
    server = serve(_garbage_after_220)
    events = await run(server, Options(timeout=3.0))
    assert set(findings(events)) == {"tls.handshake_failed"}
    texts = [line.text for line in transcript(events)]
    assert "-> ClientHello" in texts
    summary = findings(events)["tls.handshake_failed"].finding.summary
    assert "WRONG_VERSION_NUMBER" in summary or "RECORD" in summary.upper()
    assert finished(events).outcome == "handshake"


async def test_tls12_server(serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]) -> None:
    ctx = server_context(cert_files, maximum=ssl.TLSVersion.TLSv1_2)
    server = serve(smtp_script(tls_ctx=ctx))
    events = await run(server)
    tls = next(e for e in events if isinstance(e, TlsNegotiated))
    assert tls.version == "TLSv1.2"
    assert "ECDHE" in tls.cipher and tls.forward_secrecy
    assert "<- ServerKeyExchange" in tls.handshake
    assert tls.group in {"x25519", "secp256r1"}  # read from the ServerKeyExchange
    assert findings(events) == {}


async def test_legacy_only_server(
    serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]
) -> None:
    ctx = server_context(
        cert_files, minimum=ssl.TLSVersion.TLSv1, maximum=ssl.TLSVersion.TLSv1, legacy=True
    )
    server = serve(smtp_script(tls_ctx=ctx))
    events = await run(server)
    tls = [e for e in events if isinstance(e, TlsNegotiated)]
    if not tls:
        pytest.skip("this OpenSSL refuses TLSv1 handshakes")
    assert tls[0].version == "TLSv1"
    assert "tls.legacy_only" in findings(events)


async def test_ipv6(serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]) -> None:
    try:
        server = serve(smtp_script(tls_ctx=server_context(cert_files)), host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    events = await run(server)
    assert finished(events).outcome == "ok"
    assert any(isinstance(e, TlsNegotiated) for e in events)


async def test_implicit_tls(serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]) -> None:
    server = serve(smtp_script(tls_ctx=server_context(cert_files), implicit=True))
    events = await run(server, Options(timeout=1.0, implicit_tls=True, port=465))
    end = finished(events)
    assert end.outcome == "ok" and end.starttls is None
    texts = [line.text for line in transcript(events)]
    assert texts[0] == "-> ClientHello"  # TLS from the first byte
    assert "STARTTLS" not in texts
    assert findings(events) == {}


# ---- a failed handshake keeps its evidence (issue 10 item 7), against the lab's server

LAB_HOST = "127.0.0.1"


@pytest.fixture
async def lab_servers() -> AsyncIterator[list[SmtpServer]]:
    started: list[SmtpServer] = []
    yield started
    for s in started:
        await s.stop()


async def _lab_session(servers: list[SmtpServer], **behaviour: object) -> list[Event]:
    server = SmtpServer(LAB_HOST, 0, Behaviour(**behaviour))  # type: ignore[arg-type]
    await server.start()
    servers.append(server)
    where = Where("mx.lab.test", LAB_HOST, server.port)
    options = Options(port=server.port, timeout=3.0)
    return [e async for e in smtp_session(where, options, purpose="main", ehlo_name="c.test")]


@pytest.mark.lab
@pytest.mark.parametrize("tls_max", [ssl.TLSVersion.TLSv1_2, None], ids=["tls12", "tls13"])
async def test_a_handshake_that_fails_after_the_certificate_keeps_the_chain(
    lab_servers: list[SmtpServer], tls_max: ssl.TLSVersion | None
) -> None:
    events = await _lab_session(lab_servers, handshake_fail="after-certificate", tls_max=tls_max)
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
            failed_chain=[b"\x30\x03\x02\x01\x01", b"\x30\x03\x02\x01\x02"],
            failed_before_hello=False,
        )
    )
    assert "no version mismatch" in after and "(2 certificates)" in after
    assert "version in common" not in after
    # A reset before any answer is neither: the reason stays as it was.
    assert handshake_failure(conn(tls_error="connection reset during the handshake")) == (
        "connection reset during the handshake"
    )
