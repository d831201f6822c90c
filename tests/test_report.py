"""`mxlens check --json` against the lab, through the real command line: the JSON validates
against the contract, stdout holds nothing else, and the exit status follows the findings."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jsonschema
import pytest

from mxlens_lab.scenarios import SCENARIOS
from probes.model.events import (
    EndpointChecked,
    Event,
    Evidence,
    Finding,
    FindingRaised,
    Where,
    evidence_of,
)
from probes.model.findings import EXPIRES_SOON, raise_finding
from probes.model.options import Options
from probes.net.smtp import Transcript
from probes.report import Report, expiry, host_port
from tests.support.fake_stream import fake_diagnose

pytestmark = pytest.mark.lab

SCHEMA = json.loads((Path(__file__).parents[1] / "docs" / "schema" / "mxlens-1.json").read_text())
ENV = {**os.environ, "PYTHONPATH": os.getcwd()}


def check(domain: str, *flags: str) -> tuple[int, dict, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "tui.cli", "check", domain, "--lab", "--json", *flags],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)  # stdout is one JSON document and nothing else
    return proc.returncode, doc, proc.stderr


@pytest.mark.parametrize(
    "name, code",
    [
        ("healthy", 0),
        ("tlsrpt-missing", 0),  # info only
        ("legacy-accepted", 1),  # a warning: mail flows
        ("no-starttls", 2),
        ("nxdomain", 2),
        ("hostile", 0),
    ],
)
def test_json_validates_and_exit_code_follows_findings(name: str, code: int) -> None:
    domain = SCENARIOS[name].domain
    rc, doc, _ = check(domain)
    jsonschema.validate(doc, SCHEMA)
    assert rc == code, doc["findings"]
    assert doc["target"] == domain
    assert {f["id"] for f in doc["findings"] if f["severity"] != "ok"} == set(
        SCENARIOS[name].expect
    )


def test_json_session_facts_for_healthy() -> None:
    rc, doc, _ = check(SCENARIOS["healthy"].domain)
    (mx,) = doc["mx"]
    (session,) = mx["sessions"]
    assert session["starttls"] is True
    assert session["tls"]["version"] in ("TLSv1.2", "TLSv1.3")
    assert session["tls"]["forward_secrecy"] is True
    assert len(session["chain"]) == 2  # leaf + intermediate, as the lab server sends them
    dirs = [line["dir"] for line in session["transcript"]]
    assert dirs[0] == "S" and "C" in dirs and "TLS" in dirs
    assert {e["kind"] for e in session["endpoints"]} == {"ocsp", "crl", "ca_issuers"}
    assert all(e["ok"] for e in session["endpoints"])


def test_published_mta_sts_makes_expired_fatal_even_for_opportunistic_senders() -> None:
    # The lab domain publishes MTA-STS in enforce mode, which every MTA-STS sender (Exchange
    # Online included, connector or not) honours: an expired certificate stops delivery.
    domain = SCENARIOS["expired"].domain
    rc_strict, strict, _ = check(domain)
    rc_opp, opp, _ = check(domain, "--policy", "opportunistic")
    sev = {f["id"]: f["severity"] for f in strict["findings"]}
    sev_opp = {f["id"]: f["severity"] for f in opp["findings"]}
    assert sev["cert.expired"] == "error" and rc_strict == 2
    assert sev_opp["cert.expired"] == "error" and rc_opp == 2
    assert opp["policy"] == "opportunistic"


def test_policy_regrades_when_nothing_is_published() -> None:
    # The mtasts-testing domain publishes MTA-STS in testing mode only: a self-signed-like
    # problem is not at stake there, but its info finding must stay info under every policy,
    # and the exit status stays 0.
    domain = SCENARIOS["mtasts-testing"].domain
    for policy in ("strict", "opportunistic", "verify"):
        rc, doc, _ = check(domain, "--policy", policy)
        assert rc == 0, doc["findings"]
        assert {f["severity"] for f in doc["findings"]} <= {"info", "ok"}


def test_hostile_banner_kept_verbatim_in_json() -> None:
    _, doc, _ = check(SCENARIOS["hostile"].domain)
    greeting = doc["mx"][0]["sessions"][0]["transcript"][0]["text"]
    assert "[bold red]" in greeting
    assert "\x1b" in greeting  # JSON holds the text exactly as received ...
    assert "\ufffd" in greeting  # ... with invalid UTF-8 replaced


def test_text_report_makes_hostile_text_inert() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tui.cli", "check", SCENARIOS["hostile"].domain, "--lab"],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[bold red]mx1[/]" in proc.stdout  # shown literally, not as markup
    assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout
    assert "\u241b" in proc.stdout  # the visible stand-in for ESC


def test_lab_stops_quietly_with_connections_still_open() -> None:
    # revocation-unavailable has endpoints that answer slower than the client waits, so the
    # lab stops while connections are open: nothing may be printed on stderr.
    _, _, stderr = check(SCENARIOS["revocation-unavailable"].domain)
    assert stderr == ""


def fake_report() -> Report:
    async def collect() -> list[Event]:
        return [e async for e in fake_diagnose("example.org", Options(), delay=0.0)]

    report = Report("example.org", Options())
    for event in asyncio.run(collect()):
        report.add(event)
    return report


def test_evidence_text_form_round_trips_and_bad_refs_are_dropped() -> None:
    refs = ["transcript:12", "cert:0", "endpoint:http://crl.example/x.crl", "cert:x", "nonsense"]
    parsed = evidence_of(refs)
    assert parsed == (
        Evidence("transcript", 12),
        Evidence("cert", 0),
        Evidence("endpoint", url="http://crl.example/x.crl"),
    )
    assert [str(e) for e in parsed] == refs[:3]


def test_old_raise_sites_still_work_and_json_keeps_the_text_form() -> None:
    f = raise_finding("cert.expired", Where("mx.example"), "expired", evidence=("cert:1",))
    assert f.evidence == (Evidence("cert", 1),)
    direct = Finding("x", "ok", Where("h"), "s", "d", "", ("transcript:3",))  # type: ignore[arg-type]
    assert direct.evidence == (Evidence("transcript", 3),)
    report = Report("example.org", Options())
    report.add(FindingRaised(f))
    assert report.to_json()["findings"][0]["evidence"] == ["cert:1"]


def test_transcript_lines_are_numbered_from_0_and_times_never_go_back() -> None:
    t = Transcript(Where("mx.example", "192.0.2.1", 25), "main")
    first = t.line("C", "EHLO me", 155.1)
    second = t.line("S", "250 ok", 155.0)  # stamped at arrival, made after the line above
    third = t.line("C", "QUIT")
    assert [first.index, second.index, third.index] == [0, 1, 2]
    assert first.t_ms <= second.t_ms <= third.t_ms
    assert second.t_ms == 155.1


def test_expiry_uses_the_engine_threshold() -> None:
    now = datetime(2026, 11, 1, tzinfo=timezone.utc)

    def iso(delta: timedelta) -> str:
        return (now + delta).strftime("%Y-%m-%dT%H:%M:%SZ")

    assert expiry(iso(EXPIRES_SOON + timedelta(hours=12)), now) == ("ok", 14)
    assert expiry(iso(EXPIRES_SOON - timedelta(hours=12)), now) == ("soon", 13)
    assert expiry(iso(-timedelta(days=2)), now)[0] == "expired"
    assert expiry("not a date", now) == ("unknown", None)


def test_endpoints_attach_to_their_session_one_row_per_url() -> None:
    report = fake_report()
    shown = report.endpoints_for("mx1.example.org", "192.0.2.10")
    assert shown and len({e.url for e in shown}) == len(shown)
    where = Where("mx2.example.org", "192.0.2.20", 25)
    url = "http://ocsp.other.test/x"
    for ok in (False, True):  # checked twice: the latest result is the row
        report.add(
            EndpointChecked(
                "ocsp", url, "ocsp.other.test", ok, 200, 1.0, None, None, "ff", where=where
            )
        )
    rows = report.endpoints_for("mx2.example.org", "192.0.2.20")
    assert [e.ok for e in rows if e.url == url] == [True]
    assert url not in {e.url for e in report.endpoints_for("mx1.example.org", "192.0.2.10")}
    assert "ocsp.other.test:80" in report.firewall_list()


def test_findings_per_address_and_certificate() -> None:
    report = fake_report()
    mx2 = report.findings_for("mx2.example.org", "192.0.2.20")
    assert mx2 and all(f.where.host == "mx2.example.org" for f in mx2)
    assert [f.severity for f in mx2] == sorted(
        (f.severity for f in mx2), key=["error", "warning", "info", "ok"].index
    )
    leaf = {f.id for f in report.findings_for_cert("mx2.example.org", "192.0.2.20", 0)}
    assert "cert.name_mismatch" in leaf and "cert.expires_soon" in leaf
    assert report.address_status("mx2.example.org", "192.0.2.20") == "error"


def test_regrade_and_back() -> None:
    report = fake_report()
    run = list(report.findings)
    calmer = [f for f in run if f.severity != "error"]
    report.regrade(calmer)
    assert report.findings == calmer and report.exit_code() < 2
    report.regrade(None)
    assert report.findings == run


@pytest.mark.parametrize(
    "url, entry",
    [
        ("http://crl.example/x.crl", "crl.example:80"),
        ("https://OCSP.Example:8443/", "ocsp.example:8443"),
        ("http://[2001:db8::1]/c", "[2001:db8::1]:80"),
        ("not a url", ""),
        ("http://[bad/", ""),
    ],
)
def test_host_port(url: str, entry: str) -> None:
    assert host_port(url) == entry


def test_the_run_says_what_it_graded_with_before_the_held_findings() -> None:
    from mxlens_lab.world import Lab
    from probes.diagnose import diagnose
    from probes.model.events import GradingSettled

    async def events() -> list[Event]:
        async with Lab(["expired"]) as lab:
            options = lab.options("expired")
            return [e async for e in diagnose(lab.domain("expired"), options)]

    seen = asyncio.run(events())
    settled = [i for i, e in enumerate(seen) if isinstance(e, GradingSettled)]
    assert len(settled) == 1
    event = seen[settled[0]]
    assert isinstance(event, GradingSettled)
    assert event.policy == "strict" and event.mtasts_enforce is True
    cert_findings = [
        i
        for i, e in enumerate(seen)
        if isinstance(e, FindingRaised) and e.finding.id.startswith("cert.")
    ]
    assert cert_findings and settled[0] < cert_findings[0]
    report = Report("expired.lab.test", Options())
    for e in seen:
        report.add(e)
    assert report.grading == event


def test_a_pool_finding_does_not_mark_the_healthy_address() -> None:
    report = Report("example.org", Options())
    healthy = Where("mx2.example.org", "192.0.2.2", 25)
    report.add(FindingRaised(raise_finding("pool.inconsistent", healthy, "differs from mx1")))
    assert report.address_status("mx2.example.org", "192.0.2.2") is None
    assert [f.id for f in report.findings_for("mx2.example.org", "192.0.2.2")] == [
        "pool.inconsistent"
    ]  # still listed with the address's findings, only not its mark
