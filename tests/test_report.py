"""`mxlens check --json` against the lab, through the real command line: the JSON validates
against the contract, stdout holds nothing else, and the exit status follows the findings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from mxlens_lab.scenarios import SCENARIOS

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
