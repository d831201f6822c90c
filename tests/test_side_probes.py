"""The side probes (probes/checks/side_probes.py) and the protocol depth around them: the
TLS 1.2 cipher probe, the version sweep, the STARTTLS injection test, --attempts, politeness
on 421, --ehlo on every connection, submission (587 STARTTLS, 465 implicit TLS), and endless
continuation lines.

Everything runs against real sockets on loopback: the lab (DNS, SMTP, HTTP), a lab
SmtpServer started here on a lab address, or a scripted server of tests/support/smtp.py.
No mocks.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mxlens_lab.smtp_server import Behaviour, SmtpServer
from mxlens_lab.world import Lab
from probes.checks.session import rate_limit_backoff
from probes.checks.side_probes import (
    WEAK_FAMILIES,
    starttls_injection_test,
    tls12_cipher_probe,
    tls_version_sweep,
    weak_families_available,
)
from probes.model.events import (
    FindingRaised,
    SessionFinished,
    SessionStarted,
    TlsVersionsProbed,
    TranscriptLine,
    Where,
)
from probes.model.options import MxOverride, Options
from probes.report import Report
from tests.support.collect import collect, gather
from tests.support.smtp import (
    FakeSmtp,
    evidence_line,
    findings,
    finished,
    server_context,
    smtp_script,
    transcript,
)

pytestmark = [
    pytest.mark.lab,
    pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning"),
]


async def run(domain: str, options: Options) -> tuple[Report, list[Any]]:
    events: list[Any] = []
    report = await collect(domain, options, events)
    return report, events


def ids(report: Report) -> dict[str, str]:
    return {f.id: f.severity for f in report.findings if f.severity != "ok"}


def only_session(report: Report) -> dict[str, Any]:
    doc = report.to_json()
    sessions = [s for mx in doc["mx"] for s in mx["sessions"]]
    assert len(sessions) == 1, sessions
    session: dict[str, Any] = sessions[0]
    return session


def finding(report: Report, fid: str) -> Any:
    found = [f for f in report.findings if f.id == fid]
    assert len(found) == 1, [(f.id, f.summary) for f in report.findings]
    return found[0]


# --------------------------------------------------------------------------- cipher probe


def test_weak_families_this_host_can_and_cannot_offer() -> None:
    can, cannot = weak_families_available()
    assert sorted(can + cannot) == sorted(label for label, _ in WEAK_FAMILIES)
    # OpenSSL 3 still has NULL suites at SECLEVEL 0; the weak-suite scenario depends on it.
    assert "NULL" in can


async def test_cipher_probe_direct_weak_accepted_static_rsa_refused() -> None:
    # An EC certificate: static RSA cannot be negotiated at all; NULL after AES-GCM can.
    server = SmtpServer(
        "127.0.0.1",
        0,
        Behaviour(ciphers="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-NULL-SHA:@SECLEVEL=0"),
    )
    await server.start()
    try:
        from probes.model.events import Where

        where = Where("mx.lab.test", "127.0.0.1", server.port)
        events = await gather(
            tls12_cipher_probe(where, Options(timeout=2.0), ehlo_name="probe.test")
        )
    finally:
        await server.stop()
    found = {e.finding.id: e.finding for e in events if isinstance(e, FindingRaised)}
    assert set(found) == {"tls.weak_suite_accepted"}
    assert "ECDHE-ECDSA-NULL-SHA" in found["tls.weak_suite_accepted"].summary
    lines = [e for e in events if isinstance(e, TranscriptLine)]
    assert all(line.purpose == "cipher-probe" for line in lines)
    texts = [line.text for line in lines]
    assert any("static-RSA" in t and "refused" in t for t in texts)
    end = [e for e in events if isinstance(e, SessionFinished)][-1]
    assert end.purpose == "cipher-probe" and end.connections == 2
    assert server.log.connections == 2 and server.log.max_active == 1
    assert server.log.forbidden == []


async def test_lab_non_fs_accepted_while_best_suite_is_ecdhe() -> None:
    async with Lab(scenarios=["tls-non-fs"]) as lab:
        report, _ = await run(lab.domain("tls-non-fs"), lab.options("tls-non-fs"))
        server = lab.servers("tls-non-fs")[0]
    assert ids(report) == {"tls.non_fs_accepted": "warning"}
    session = only_session(report)
    # The main session negotiated with forward secrecy: that is why this is a separate id.
    assert session["tls"]["forward_secrecy"] is True
    f = finding(report, "tls.non_fs_accepted")
    assert "AES128-GCM-SHA256" in f.summary and "TLSv1.2" in f.summary
    # main 1 + version sweep 4 + cipher probe 2 + injection 1, all counted, none at once.
    assert session["connections"] == server.log.connections == 8
    assert server.log.max_active == 1


async def test_lab_weak_suite_accepted() -> None:
    async with Lab(scenarios=["tls-weak-suite"]) as lab:
        report, _ = await run(lab.domain("tls-weak-suite"), lab.options("tls-weak-suite"))
    assert ids(report) == {"tls.weak_suite_accepted": "warning"}
    assert "NULL" in finding(report, "tls.weak_suite_accepted").summary


async def test_negotiated_weak_cipher_is_not_reported_twice() -> None:
    # The main session already negotiates NULL: tls.weak_cipher says it, the weak probe is
    # not run (one connection fewer), and tls.weak_suite_accepted does not appear.
    async with Lab(scenarios=["weak-cipher"]) as lab:
        report, events = await run(lab.domain("weak-cipher"), lab.options("weak-cipher"))
    assert "tls.weak_cipher" in ids(report)
    assert "tls.weak_suite_accepted" not in ids(report)
    probe = [e for e in events if isinstance(e, SessionFinished) and e.purpose == "cipher-probe"]
    assert len(probe) == 1 and probe[0].connections == 1  # the static-RSA question only


# --------------------------------------------------------------------------- --attempts


async def test_attempts_two_name_the_odd_attempt() -> None:
    async with Lab(scenarios=["lb-alternating"]) as lab:
        options = lab.options("lb-alternating")
        assert options.attempts == 2
        report, events = await run(lab.domain("lb-alternating"), options)
        server = lab.servers("lb-alternating")[0]
    assert ids(report) == {"pool.inconsistent": "warning"}
    f = finding(report, "pool.inconsistent")
    assert f.summary.startswith("attempt 2 of 2 at ") and "no STARTTLS" in f.summary
    assert f.where.address == server.host
    # The second connection is the attempt: EHLO, no STARTTLS offered, QUIT.
    assert server.log.verbs(2) == ["EHLO", "QUIT"]
    assert [e.purpose for e in events if isinstance(e, SessionFinished)][:2] == ["main", "attempt"]
    # The report keeps the first attempt as the session; the attempt counts as a connection.
    session = only_session(report)
    assert session["starttls"] is True and session["outcome"] == "ok"
    assert session["connections"] == server.log.connections


async def test_attempts_one_does_not_see_the_odd_node() -> None:
    async with Lab(scenarios=["lb-alternating"]) as lab:
        report, _ = await run(
            lab.domain("lb-alternating"), lab.options("lb-alternating", attempts=1)
        )
    assert ids(report) == {}


# --------------------------------------------------------------------------- politeness


def test_backoff_is_min_5_and_timeout_unless_set() -> None:
    assert rate_limit_backoff(Options(timeout=2.0)) == 2.0
    assert rate_limit_backoff(Options(timeout=10.0)) == 5.0
    assert rate_limit_backoff(Options(timeout=10.0, rate_limit_backoff=0.25)) == 0.25


async def test_throttle_once_then_healthy_result_plus_info() -> None:
    async with Lab(scenarios=["rate-limited-once", "healthy"]) as lab:
        options = lab.options("rate-limited-once", rate_limit_backoff=0.3)
        report, _ = await run(lab.domain("rate-limited-once"), options)
        server = lab.servers("rate-limited-once")[0]
        healthy, _ = await run(lab.domain("healthy"), lab.options("healthy"))
    assert ids(report) == {"smtp.rate_limited": "info"}
    assert report.exit_code() == 0
    f = finding(report, "smtp.rate_limited")
    assert "Too many connections" in f.summary and "retry" in f.summary
    session = only_session(report)
    texts = [line["text"] for line in session["transcript"]]
    assert any(t.startswith("421 ") for t in texts)
    assert "throttled by the server; waiting 0.3 s before one retry" in texts
    assert session["outcome"] == "ok" and session["tls"] is not None
    # Every connection to the address is counted: 2 main (421 + retry), then the probes.
    assert session["connections"] == server.log.connections
    assert session["connections"] == only_session(healthy)["connections"] + 1


async def test_always_throttled_is_rate_limited_only_after_one_retry() -> None:
    async with Lab(scenarios=["rate-limited"]) as lab:
        options = lab.options("rate-limited", rate_limit_backoff=0.2)
        report, _ = await run(lab.domain("rate-limited"), options)
        server = lab.servers("rate-limited")[0]
    assert ids(report) == {"smtp.rate_limited": "warning"}
    assert server.log.connections == 2  # the first and ONE retry, nothing more
    assert only_session(report)["connections"] == 2
    assert server.log.handshakes == 0


# --------------------------------------------------------------------------- --ehlo


async def test_ehlo_name_is_used_on_every_connection() -> None:
    async with Lab(scenarios=["healthy"]) as lab:
        options = lab.options("healthy", ehlo="probe.example.net")
        report, _ = await run(lab.domain("healthy"), options)
        server = lab.servers("healthy")[0]
    assert ids(report) == {}
    ehlos = [c for c in server.log.commands if c.line.split(" ", 1)[0].upper() == "EHLO"]
    assert ehlos and {c.line for c in ehlos} == {"EHLO probe.example.net"}
    # Every connection said EHLO, with that name, at least once.
    assert {c.conn for c in ehlos} == set(range(1, server.log.connections + 1))
    assert server.log.forbidden == []


# --------------------------------------------------------------------------- submission


async def _extra_server(lab: Lab, behaviour: Behaviour) -> tuple[SmtpServer, str, str]:
    """A second SMTP server on the healthy MX's own address, on a free port, with the
    healthy MX's certificate (so the name and chain are right)."""
    plan = lab.host_plans("healthy")[0]
    assert plan.issued is not None
    behaviour = replace(
        behaviour,
        hostname=plan.host,
        cert_chain_pem=plan.issued.pem_chain(),
        key_pem=plan.issued.key_pem(),
    )
    server = SmtpServer(plan.address, 0, behaviour)
    await server.start()
    return server, plan.host, plan.address


async def test_submission_587_starttls_by_host_and_port() -> None:
    async with Lab(scenarios=["healthy"]) as lab:
        server, host, address = await _extra_server(lab, Behaviour())
        try:
            options = lab.options("healthy", mx=(MxOverride(host, server.port),), port=587)
            report, _ = await run(lab.domain("healthy"), options)
        finally:
            await server.stop()
    assert ids(report) == {}
    session = only_session(report)
    assert session["port"] == server.port and session["address"] == address
    texts = [(line["dir"], line["text"]) for line in session["transcript"]]
    client = [t for d, t in texts if d == "C"]
    assert client[0].startswith("EHLO ") and client[1] == "STARTTLS"
    assert ("S", "220 2.0.0 Ready to start TLS") in texts
    assert any(d == "TLS" and t.startswith("handshake done: TLSv1.3") for d, t in texts)
    assert session["connections"] == server.log.connections


async def test_submission_587_by_address_and_port() -> None:
    # `--mx ADDR:PORT`: the address is probed as given. A strict sender checks the name it
    # connected to (the address), which the certificate does not carry; the MTA-STS
    # enforce policy lists mx1.<domain>, not the address.
    async with Lab(scenarios=["healthy"]) as lab:
        server, _host, address = await _extra_server(lab, Behaviour())
        try:
            options = lab.options("healthy", mx=(MxOverride(address, server.port),))
            report, _ = await run(lab.domain("healthy"), options)
        finally:
            await server.stop()
    assert ids(report) == {"cert.name_mismatch": "error", "mtasts.mx_not_covered": "error"}
    assert address in finding(report, "cert.name_mismatch").summary
    session = only_session(report)
    assert session["address"] == address and session["port"] == server.port
    assert [line["text"] for line in session["transcript"] if line["dir"] == "C"][1] == "STARTTLS"


async def test_implicit_tls_465() -> None:
    async with Lab(scenarios=["healthy"]) as lab:
        server, host, _ = await _extra_server(lab, Behaviour(implicit_tls=True))
        try:
            options = lab.options(
                "healthy", mx=(MxOverride(host, server.port),), implicit_tls=True, port=465
            )
            report, events = await run(lab.domain("healthy"), options)
        finally:
            await server.stop()
    assert ids(report) == {}
    session = only_session(report)
    lines = session["transcript"]
    # TLS from the first byte: the handshake comes before the greeting; no STARTTLS at all.
    assert lines[0]["dir"] == "TLS" and lines[0]["text"] == "-> ClientHello"
    first_s = next(line for line in lines if line["dir"] == "S")
    assert first_s["text"].startswith("220 ")
    assert [line["text"] for line in lines if line["dir"] == "C"][0].startswith("EHLO ")
    assert "STARTTLS" not in server.log.verbs()
    assert session["starttls"] is None and session["tls"]["version"] == "TLSv1.3"
    # No injection test over implicit TLS (nothing is sent in clear text); the version
    # sweep and the cipher probe still run.
    purposes = {e.purpose for e in events if isinstance(e, SessionFinished)}
    assert purposes == {"main", "tls-versions", "cipher-probe"}
    assert session["tls_versions"] == {
        "TLSv1": False,
        "TLSv1.1": False,
        "TLSv1.2": True,
        "TLSv1.3": True,
    }
    # main 1 + sweep 4 + cipher probe 2 (both refused: EC key, no NULL). With implicit TLS
    # the lab server only sees connections whose handshake completed: main, 1.2 and 1.3.
    assert session["connections"] == 7
    assert server.log.connections == server.log.handshakes == 3


# --------------------------------------------------------------------------- injection


async def test_injection_test_reads_one_reply_after_quit() -> None:
    async with Lab(scenarios=["healthy", "plaintext-injection"]) as lab:
        report, events = await run(lab.domain("healthy"), lab.options("healthy"))
        bad, bad_events = await run(
            lab.domain("plaintext-injection"), lab.options("plaintext-injection")
        )
    assert ids(report) == {}
    inj = [e for e in events if isinstance(e, TranscriptLine) and e.purpose == "injection"]
    texts = [(e.dir, e.text) for e in inj]
    done = next(i for i, (d, t) in enumerate(texts) if t.startswith("handshake done"))
    after = [x for x in texts[done + 1 :] if x[0] != "TLS"]
    # Right after the handshake: QUIT, then its 221 as the first reply. No idle wait.
    assert after[0] == ("C", "QUIT") and after[1][0] == "S" and after[1][1].startswith("221")
    assert "not vulnerable" in after[2][1]
    assert not any("timeout" in t for _, t in texts)

    assert ids(bad) == {"tls.plaintext_injection": "warning"}
    inj = [e for e in bad_events if isinstance(e, TranscriptLine) and e.purpose == "injection"]
    texts = [(e.dir, e.text) for e in inj]
    quit_at = texts.index(("C", "QUIT"))
    replies = [t for d, t in texts[quit_at + 1 :] if d == "S"]
    assert replies[0].startswith("250") and replies[1].startswith("221")


# --------------------------------------------------------------------------- endless lines


async def test_endless_continuation_lines_are_an_error() -> None:
    async with Lab(scenarios=["endless-lines"]) as lab:
        report, _ = await run(lab.domain("endless-lines"), lab.options("endless-lines"))
    assert ids(report) == {"smtp.malformed_reply": "warning", "smtp.timeout": "error"}
    assert report.exit_code() == 2
    session = only_session(report)
    assert session["outcome"] == "greeting" and session["tls"] is None
    assert sum(1 for line in session["transcript"] if line["dir"] == "S") == 100
    assert "never ended" in finding(report, "smtp.timeout").summary


# --------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("value", ["0", "21", "two"])
def test_attempts_flag_rejects_bad_values(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    from tui.cli import main

    assert main(["check", "example.org", "--attempts", value]) == 3
    err = capsys.readouterr().err
    assert "--attempts" in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- version sweep
# (and the injection test) against scripted servers of tests/support/smtp.py

SMTP_OPTIONS = Options(timeout=1.0)


def _sweep_result(events: list) -> dict[str, bool | None]:
    probed = [e for e in events if isinstance(e, TlsVersionsProbed)]
    assert len(probed) == 1
    return dict(probed[0].accepted)


async def test_sweep_tls12_only(
    serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]
) -> None:
    ctx = server_context(cert_files, maximum=ssl.TLSVersion.TLSv1_2)
    server = serve(smtp_script(tls_ctx=ctx))
    events = await gather(tls_version_sweep(server.where(), SMTP_OPTIONS, ehlo_name="client.test"))

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
    events = await gather(tls_version_sweep(server.where(), SMTP_OPTIONS, ehlo_name="client.test"))
    result = _sweep_result(events)
    assert result["TLSv1.2"] is True and result["TLSv1.3"] is True
    assert findings(events) == {}


async def test_sweep_legacy_accepted(
    serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]
) -> None:
    ctx = server_context(cert_files, minimum=ssl.TLSVersion.TLSv1, legacy=True)
    server = serve(smtp_script(tls_ctx=ctx))
    events = await gather(tls_version_sweep(server.where(), SMTP_OPTIONS, ehlo_name="client.test"))
    result = _sweep_result(events)
    if result["TLSv1"] is not True:
        pytest.skip("this OpenSSL does not complete TLSv1 handshakes even at SECLEVEL=0")
    assert set(findings(events)) == {"tls.legacy_accepted"}
    assert "TLSv1" in findings(events)["tls.legacy_accepted"].finding.summary


async def test_sweep_without_starttls_tests_nothing(serve: Callable[..., FakeSmtp]) -> None:
    server = serve(smtp_script(ehlo=b"250 mx.test\r\n"))
    events = await gather(tls_version_sweep(server.where(), SMTP_OPTIONS, ehlo_name="client.test"))
    assert set(_sweep_result(events).values()) == {None}
    assert findings(events) == {}
    assert finished(events).outcome == "starttls"
    assert server.connections == 1  # gave up after the first connection


async def test_injection_vulnerable(
    serve: Callable[..., FakeSmtp], cert_files: tuple[Path, Path]
) -> None:
    server = serve(smtp_script(tls_ctx=server_context(cert_files), keep_buffer=True))
    events = await gather(
        starttls_injection_test(server.where(), SMTP_OPTIONS, ehlo_name="client.test")
    )
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
    events = await gather(
        starttls_injection_test(server.where(), SMTP_OPTIONS, ehlo_name="client.test")
    )
    assert time.monotonic() - start < SMTP_OPTIONS.timeout + 3
    assert findings(events) == {}
    texts = [t.text for t in transcript(events)]
    assert any("not vulnerable" in t for t in texts)
    end = finished(events)
    assert isinstance(end, SessionFinished) and end.outcome == "ok" and end.starttls is True


async def test_sweep_unreachable_reports_none() -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    events = await gather(
        tls_version_sweep(
            Where("mx.test", "127.0.0.1", port), SMTP_OPTIONS, ehlo_name="client.test"
        )
    )
    assert set(_sweep_result(events).values()) == {None}
    assert finished(events).outcome == "connect"
