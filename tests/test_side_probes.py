"""The side probes (probes/checks/side_probes.py) and the protocol depth around them: the
probe plan of issue 12 (at most four connections per address, the side probes after the
main session and at most three at once, their answers as data, a 421 on a side probe that
never changes the verdict, --quick, shared DNS questions and pooled TLS contexts), the cipher
probe, the legacy probe, the STARTTLS injection test, --attempts, politeness on 421, --ehlo
on every connection, submission (587 STARTTLS, 465 implicit TLS), and endless continuation
lines.

Everything runs against real sockets on loopback: the lab (DNS, SMTP, HTTP), a lab
SmtpServer started here on a lab address, or a scripted server of tests/support/smtp.py.
No mocks.
"""

from __future__ import annotations

import asyncio
import json
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
    SIDE_CHECKS,
    WEAK_FAMILIES,
    MainFacts,
    cipher_probe_offer,
    side_probes,
    static_rsa_suites,
    weak_families_available,
)
from probes.model.events import (
    DnsQuery,
    Event,
    Evidence,
    FindingRaised,
    SessionFinished,
    SideProbeChecked,
    TlsVersionsProbed,
    TranscriptLine,
    Where,
)
from probes.model.options import MxOverride, Options
from probes.net.dns import Resolver
from probes.net.tls import contexts_built
from probes.report import Report
from tests.support.collect import collect, gather
from tests.support.smtp import (
    FakeSmtp,
    findings,
    server_context,
    smtp_script,
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


async def test_cipher_probe_direct_weak_accepted_static_rsa_excluded_by_the_key() -> None:
    # An EC certificate: static RSA cannot be negotiated at all; NULL after AES-GCM can.
    server = SmtpServer(
        "127.0.0.1",
        0,
        Behaviour(ciphers="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-NULL-SHA:@SECLEVEL=0"),
    )
    await server.start()
    try:
        where = Where("mx.lab.test", "127.0.0.1", server.port)
        main = MainFacts("TLSv1.3", "TLS_AES_256_GCM_SHA384", 7, key_type="EC")
        events = await gather(
            side_probes(where, Options(timeout=2.0), ehlo_name="probe.test", main=main)
        )
    finally:
        await server.stop()
    found = {e.finding.id: e.finding for e in events if isinstance(e, FindingRaised)}
    assert set(found) == {"tls.weak_suite_accepted"}
    assert "ECDHE-ECDSA-NULL-SHA" in found["tls.weak_suite_accepted"].summary
    results = {e.check: e for e in events if isinstance(e, SideProbeChecked)}
    assert {c: r.result for c, r in results.items()} == {
        "weak-suites": "vulnerable",
        "static-rsa": "not vulnerable",
        "legacy-tls": "not vulnerable",
        "injection": "not vulnerable",
    }
    assert "key is EC" in results["static-rsa"].reason
    lines = [e for e in events if isinstance(e, TranscriptLine) and e.purpose == "cipher-probe"]
    assert any("offering only weak and static-RSA suites" in line.text for line in lines)
    ends = {e.purpose: e for e in events if isinstance(e, SessionFinished)}
    assert set(ends) == {"cipher-probe", "tls-versions", "injection"}
    # One ClientHello each, three at once at most, and nothing sent that a probe must not.
    assert server.log.connections == 3 and server.log.max_active <= 3
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
    # main 1, then the cipher probe, the legacy probe and the injection test (at most three
    # at once). The server chose the first static-RSA suite offered after the weak ones, so
    # it follows the client's order and has none of them: no fourth connection.
    assert session["connections"] == server.log.connections == 4
    assert server.log.max_active <= 3
    results = {p["check"]: p["result"] for p in session["side_probes"]}
    assert results == {
        "static-rsa": "vulnerable",
        "weak-suites": "not vulnerable",
        "legacy-tls": "not vulnerable",
        "injection": "not vulnerable",
    }


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
    # main 1 + cipher probe 1 + legacy probe 1, both refused. This server resets refused
    # handshakes without an alert, so the cipher probe cannot tell a suite refusal from a
    # version refusal: the connection the absent injection test leaves over asks TLS 1.2
    # with every suite. With implicit TLS the lab server only sees connections whose
    # handshake completed: the main session and that one.
    assert session["connections"] == 4
    assert server.log.connections == server.log.handshakes == 2
    assert {p["check"]: p["result"] for p in session["side_probes"]} == {
        "static-rsa": "not vulnerable",
        "weak-suites": "not vulnerable",
        "legacy-tls": "not vulnerable",
    }


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


# --------------------------------------------------------------------------- scripted servers
# (the side probes against scripted servers of tests/support/smtp.py)

SMTP_OPTIONS = Options(timeout=1.0)
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
    return await gather(
        side_probes(server.where(), SMTP_OPTIONS, ehlo_name="client.test", main=main)
    )


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
    assert findings(events)["tls.no_tls13"].finding.evidence == (Evidence("transcript", 9),)
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
    assert ref.kind == "transcript" and ref.index is not None
    line = lines[ref.index]
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
    assert time.monotonic() - start < SMTP_OPTIONS.timeout + 3
    assert findings(events) == {}
    texts = [t.text for t in _lines(events, "injection")]
    assert any("not vulnerable" in t for t in texts)
    end = _ends(events)["injection"]
    assert end.outcome == "ok" and end.starttls is True
    assert _results(events)["injection"] == "not vulnerable"


async def test_unreachable_reports_none() -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    events = await gather(
        side_probes(
            Where("mx.test", "127.0.0.1", port), SMTP_OPTIONS, ehlo_name="client.test", main=TLS13
        )
    )
    result = _versions(events)
    assert result["TLSv1"] is result["TLSv1.1"] is result["TLSv1.2"] is None
    assert {e.outcome for e in _ends(events).values()} == {"connect"}
    assert set(_results(events).values()) == {"inconclusive"}


# --------------------------------------------------------------------------- the plan (issue 12)


SCHEMA = json.loads(
    (Path(__file__).parent.parent / "docs" / "schema" / "mxlens-1.json").read_text()
)


def results(session: dict[str, Any]) -> dict[str, str]:
    return {p["check"]: p["result"] for p in session["side_probes"]}


async def own_server(lab: Lab, behaviour: Behaviour) -> tuple[SmtpServer, str]:
    """A server on the healthy MX's address and a free port, with its certificate."""
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
    return server, plan.host


# --------------------------------------------------------------------------- the plan


def test_cipher_probe_offers_weak_suites_first_then_the_common_static_rsa_one() -> None:
    offer = cipher_probe_offer(static_rsa=True, weak=True)
    assert offer is not None
    ciphers, rsa = offer
    names = ciphers.split(":")
    assert names[-1] == "@SECLEVEL=0"
    can, _ = weak_families_available()
    assert "NULL" in can
    first_rsa = names.index(rsa[0])
    # Every weak (NULL) suite comes before every static-RSA one.
    assert all("NULL" in n for n in names[:first_rsa]) and first_rsa > 0
    assert rsa[0] == "AES128-GCM-SHA256" and rsa == static_rsa_suites()
    assert cipher_probe_offer(static_rsa=False, weak=False) is None


async def test_healthy_four_connections_three_at_once_every_answer_as_data() -> None:
    async with Lab(scenarios=["healthy"]) as lab:
        report, events = await run(lab.domain("healthy"), lab.options("healthy"))
        server = lab.servers("healthy")[0]
    assert {f.id for f in report.findings if f.severity != "ok"} == set()
    session = only_session(report)
    assert session["connections"] == server.log.connections == 4
    assert 1 < server.log.max_active <= 3  # the side probes overlap, never more than three
    # The main session came first and alone: every side probe started after it finished.
    order = [e.purpose for e in events if isinstance(e, SessionFinished)]
    assert order[0] == "main" and sorted(order[1:]) == ["cipher-probe", "injection", "tls-versions"]
    assert results(session) == {check: "not vulnerable" for check in SIDE_CHECKS}
    for probe in session["side_probes"]:
        assert probe["reason"] and probe["transcript"], probe
        assert probe["ms"] is not None and probe["ms"] > 0
        assert probe["evidence"] and probe["evidence"][0].startswith("transcript:")
    # The lab's asyncio server hangs up on a refused handshake without an alert, so the
    # cipher probe's refusal cannot say whether TLS 1.2 itself is accepted (OpenSSL and
    # GnuTLS servers send one: see the Postfix integration tests), and no connection of the
    # budget is left to ask it alone.
    assert session["tls_versions"] == {
        "TLSv1": False,
        "TLSv1.1": False,
        "TLSv1.2": None,
        "TLSv1.3": True,
    }
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(report.to_json(), SCHEMA)
    assert server.log.forbidden == []


async def test_legacy_accepted_from_one_client_hello_capped_at_tls11() -> None:
    async with Lab(scenarios=["legacy-accepted"]) as lab:
        report, _ = await run(lab.domain("legacy-accepted"), lab.options("legacy-accepted"))
        server = lab.servers("legacy-accepted")[0]
    session = only_session(report)
    assert results(session)["legacy-tls"] == "vulnerable"
    # One ClientHello offering 1.0 and 1.1 got 1.1; 1.0 was not asked on its own.
    assert session["tls_versions"] == {
        "TLSv1": None,
        "TLSv1.1": True,
        "TLSv1.2": None,  # refused without an alert, as above
        "TLSv1.3": True,
    }
    assert session["connections"] == server.log.connections <= 4


async def test_legacy_only_asks_tls10_alone() -> None:
    async with Lab(scenarios=["legacy-only"]) as lab:
        report, events = await run(lab.domain("legacy-only"), lab.options("legacy-only"))
    session = only_session(report)
    # The main session got 1.1, so 1.2 and 1.3 are refused; the probe asked 1.0 alone.
    assert session["tls_versions"] == {
        "TLSv1": True,
        "TLSv1.1": True,
        "TLSv1.2": False,
        "TLSv1.3": False,
    }
    purposes = sorted(e.purpose for e in events if isinstance(e, SessionFinished))
    assert purposes == ["injection", "main", "tls-versions"]  # no TLS 1.2 cipher probe


# --------------------------------------------------------------------------- politeness


async def test_a_421_on_a_side_probe_is_info_and_stops_further_probes() -> None:
    async with Lab(scenarios=["healthy"]) as lab:
        server, host = await own_server(lab, Behaviour(throttle_after=1))
        try:
            options = lab.options("healthy", mx=(MxOverride(host, server.port),))
            report, events = await run(lab.domain("healthy"), options)
        finally:
            await server.stop()
    graded = {f.id: f.severity for f in report.findings if f.severity != "ok"}
    assert graded == {"smtp.rate_limited": "info"}
    assert report.exit_code() == 0  # the verdict is the main session's
    (finding,) = [f for f in report.findings if f.id == "smtp.rate_limited"]
    assert "421 4.7.0" in finding.summary and "later side probes not made" in finding.summary
    session = only_session(report)
    assert session["outcome"] == "ok" and session["tls"] is not None
    assert set(results(session).values()) == {"inconclusive"}
    assert all("throttled" in p["reason"] for p in session["side_probes"])
    # The three started together before any 421 came back; nothing was tried after it.
    assert server.log.connections == session["connections"] == 4
    assert not any(
        isinstance(e, TlsVersionsProbed) and any(v for _, v in e.accepted[:2]) for e in events
    )


async def test_injection_inconclusive_when_pipelined_starttls_is_dropped() -> None:
    async with Lab(scenarios=["healthy"]) as lab:
        server, host = await own_server(lab, Behaviour(drop_pipelined_starttls=True))
        try:
            options = lab.options("healthy", mx=(MxOverride(host, server.port),))
            report, _ = await run(lab.domain("healthy"), options)
        finally:
            await server.stop()
    assert {f.id for f in report.findings if f.severity != "ok"} == set()
    session = only_session(report)
    got = results(session)
    assert got["injection"] == "inconclusive"
    assert got["legacy-tls"] == got["static-rsa"] == got["weak-suites"] == "not vulnerable"
    (injection,) = [p for p in session["side_probes"] if p["check"] == "injection"]
    assert "STARTTLS and NOOP arrived together" in injection["reason"]


# --------------------------------------------------------------------------- --quick


async def test_quick_is_the_main_session_only_and_says_what_it_skipped() -> None:
    async with Lab(scenarios=["healthy"]) as lab:
        options = lab.options("healthy", quick=True)
        report, events = await run(lab.domain("healthy"), options)
        server = lab.servers("healthy")[0]
    assert server.log.connections == 1
    assert report.exit_code() == 0
    assert not [e for e in events if isinstance(e, TlsVersionsProbed)]
    doc = report.to_json()
    assert [s["check"] for s in doc["skipped_checks"]] == list(SIDE_CHECKS)
    assert {s["why"] for s in doc["skipped_checks"]} == {"--quick"}
    assert only_session(report)["side_probes"] == []
    text = report.to_text()
    assert "Skipped (--quick): TLS 1.0/1.1 acceptance" in text
    assert "STARTTLS plaintext injection" in text


def test_quick_cli_flag(capsys: pytest.CaptureFixture[str]) -> None:
    from tui.cli import main

    assert main(["check", "example.org", "--quick", "--attempts", "2"]) == 3
    err = capsys.readouterr().err
    assert "--quick" in err and len(err.strip().splitlines()) == 1


def test_quick_cli_check_against_the_lab(capsys: pytest.CaptureFixture[str]) -> None:
    from tui.cli import main

    code = main(["check", "healthy.lab.test", "--lab", "--quick", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert len(doc["skipped_checks"]) == len(SIDE_CHECKS)
    (session,) = doc["mx"][0]["sessions"]
    assert session["connections"] == 1


# --------------------------------------------------------------------------- DNS, contexts


async def test_identical_questions_in_flight_go_out_once() -> None:
    async with Lab(scenarios=["healthy"]) as lab:
        assert lab.dns is not None
        asked: list[DnsQuery] = []
        resolver = Resolver(lab.resolver, timeout=2.0, on_query=asked.append)
        host = lab.host_plans("healthy")[0].host
        before = len(lab.dns.queries)
        first, second, addresses = await asyncio.gather(
            resolver.query(host, "A"), resolver.query(host, "A"), resolver.addresses(host)
        )
        sent = list(lab.dns.queries)[before:]
    assert first == second and first.records
    assert addresses[0] == first.records + addresses[2].records
    assert sorted(t for n, t in sent if n.rstrip(".").lower() == host) == ["A", "AAAA"]
    assert sorted(q.rtype for q in asked) == ["A", "AAAA"]


async def test_each_tls_context_configuration_is_built_once() -> None:
    async with Lab(scenarios=["healthy"]) as lab:
        await run(lab.domain("healthy"), lab.options("healthy"))
        built = contexts_built()
        await run(lab.domain("healthy"), lab.options("healthy"))
        again = contexts_built()
    # The second diagnosis reuses every context the first one built.
    assert again == built
