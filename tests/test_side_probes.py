"""The probe plan (issue 12): at most four connections per address, the side probes after the
main session and at most three at once, their answers as data, a 421 on a side probe that
never changes the verdict, --quick, shared DNS questions and pooled TLS contexts.

Real sockets on loopback (the lab, or a lab SmtpServer on a lab address); no mocks.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mxlens_lab.smtp_server import Behaviour, SmtpServer
from mxlens_lab.world import Lab
from probes.checks.side_probes import (
    SIDE_CHECKS,
    cipher_probe_offer,
    static_rsa_suites,
    weak_families_available,
)
from probes.diagnose import diagnose
from probes.model.events import DnsQuery, SessionFinished, TlsVersionsProbed
from probes.model.options import MxOverride, Options
from probes.net.dns import Resolver
from probes.net.tls import contexts_built
from probes.report import Report

pytestmark = [
    pytest.mark.lab,
    pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning"),
]

SCHEMA = json.loads((Path(__file__).parent / "contract_schema.json").read_text())


async def run(domain: str, options: Options) -> tuple[Report, list[Any]]:
    report = Report(domain, options)
    events: list[Any] = []
    async for event in diagnose(domain, options):
        report.add(event)
        events.append(event)
    return report, events


def only_session(report: Report) -> dict[str, Any]:
    sessions = [s for mx in report.to_json()["mx"] for s in mx["sessions"]]
    assert len(sessions) == 1, sessions
    session: dict[str, Any] = sessions[0]
    return session


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
