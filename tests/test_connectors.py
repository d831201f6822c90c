"""Connector profiles: each delivers on one lab scenario and fails on another for its documented
reason, judged by re-grading one diagnosis per scenario (no second probe)."""

from __future__ import annotations

import json

import pytest

from mxlens_lab.world import Lab
from probes.interpret.connectors import PROFILES, judge
from probes.model.errors import CheckError
from probes.report import Report
from tests.support.collect import collect
from tui.cli import main

# (profile, scenario, TlsDomain or None, delivers, step it fails at)
CASES = [
    # EXO honours the recipient's MTA-STS (the lab baseline publishes enforce) and DANE.
    ("exo-default", "revocation-unavailable", None, True, None),
    ("exo-default", "mtasts-mx-not-covered", None, False, "mta_sts"),
    ("exo-default", "dane-mismatch", None, False, "dane"),
    # Outbound connector SmtpDaneMode / MtaStsMode (since 2026-02).
    ("exo-smtpdane-mandatory", "dane-ok", None, True, None),
    ("exo-smtpdane-mandatory", "healthy", None, False, "dane"),  # no TLSA: queued
    ("exo-smtpdane-none", "dane-mismatch", None, True, None),
    ("exo-smtpdane-none", "mtasts-mx-not-covered", None, False, "mta_sts"),
    ("exo-mtasts-none", "mtasts-mx-not-covered", None, True, None),
    ("exo-mtasts-none", "dane-mismatch", None, False, "dane"),
    ("exo-encryption-only", "weak-signature", None, True, None),
    ("exo-encryption-only", "no-starttls", None, False, "starttls_offered"),
    ("exo-certificate-validation", "name-mismatch", None, False, "name_match"),  # MTA-STS enforce
    ("exo-certificate-validation", "no-tls13", None, True, None),
    ("exo-certificate-validation", "mx-pool", None, True, None),  # late or only via mx2
    ("exo-certificate-validation", "expired", None, False, "chain_trusted"),
    ("exo-certificate-validation", "revocation-unavailable", None, False, "revocation"),
    ("exo-domain-validation", "healthy", "*.healthy.lab.test", True, None),
    ("exo-domain-validation", "expected-name-mismatch", None, False, "name_match"),
    ("exo-inbound-require-tls", "expired", None, True, None),
    ("exo-inbound-require-tls", "no-starttls", None, False, "starttls_offered"),
    ("exo-inbound-certificate", "healthy", "mx1.healthy.lab.test", True, None),
    ("exo-inbound-certificate", "untrusted", "mx1.untrusted.lab.test", False, "chain_trusted"),
    ("exo-inbound-certificate", "healthy", "mail.partner.example", False, "name_match"),
    ("postfix-may", "dane-mismatch", None, True, None),
    ("postfix-may", "no-starttls", None, True, None),
    ("postfix-may", "connect-refused", None, False, "connect"),
    ("postfix-encrypt", "expired", None, True, None),
    ("postfix-encrypt", "starttls-refused", None, False, "starttls_accepted"),
    ("postfix-verify", "revoked", None, True, None),  # Postfix checks no OCSP/CRL
    ("postfix-verify", "name-mismatch", None, False, "name_match"),
    ("postfix-verify", "self-signed", None, False, "chain_trusted"),
    ("postfix-secure", "healthy", None, True, None),
    ("postfix-secure", "name-mismatch", None, False, "name_match"),
    ("postfix-dane", "dane-ok", None, True, None),
    ("postfix-dane", "dane-mismatch", None, False, "dane"),
    ("mta-sts", "dane-mismatch", None, True, None),
    ("mta-sts", "mtasts-mx-not-covered", None, False, "mta_sts"),
    ("mta-sts", "name-mismatch", None, False, "name_match"),
]


@pytest.fixture(scope="module")
def reports() -> dict[str, Report]:
    import asyncio

    names = sorted({c[1] for c in CASES})

    async def run() -> dict[str, Report]:
        out: dict[str, Report] = {}
        async with Lab(scenarios=names) as lab:
            for name in names:
                options = lab.options(name)
                domain = lab.scenarios[name].domain
                out[name] = await collect(domain, options)
        return out

    return asyncio.run(run())


def test_every_profile_has_a_delivering_and_a_failing_case() -> None:
    for name in PROFILES:
        outcomes = {c[3] for c in CASES if c[0] == name}
        assert outcomes == {True, False}, name


@pytest.mark.lab
@pytest.mark.parametrize(("profile", "scenario", "tls_domain", "delivers", "step"), CASES)
def test_profile_verdict(
    reports: dict[str, Report],
    profile: str,
    scenario: str,
    tls_domain: str | None,
    delivers: bool,
    step: str | None,
) -> None:
    result = judge(reports[scenario], profile, tls_domain)
    assert result.delivers is delivers, result.verdict
    if delivers:
        assert result.verdict.startswith(
            ("This connector would deliver.", "This connector would accept")
        ) or (
            result.walk.fallback is not None
            and result.verdict.startswith(
                f"This connector would deliver, late or only via {result.walk.fallback}"
            )
        )
        assert (
            result.walk.first_failure is None
            or result.walk.first_failure not in PROFILES[profile].steps
            or result.walk.fallback is not None
        )
    else:
        assert result.walk.first_failure == step, result.verdict
        assert f"at step {step} because" in result.verdict


@pytest.mark.lab
def test_domain_validation_needs_a_tls_domain(reports: dict[str, Report]) -> None:
    with pytest.raises(CheckError, match="TlsDomain"):
        judge(reports["healthy"], "exo-domain-validation")


@pytest.mark.lab
def test_check_connector_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["check", "--lab", "--json", "--connector", "exo-encryption-only", "no-starttls.lab.test"]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 2
    assert doc["policy"] == "encrypt"
    connector = doc["connector"]
    assert connector["name"] == "exo-encryption-only" and connector["policy"] == "encrypt"
    assert connector["delivers"] is False
    assert connector["verdict"].startswith("This connector would fail at step starttls_offered")
    assert "walk" not in doc  # only with --walk


def test_unknown_connector_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--connector", "nope", "example.org"]) == 3
    assert "unknown connector" in capsys.readouterr().err


@pytest.mark.lab
def test_a_step_the_connector_does_not_check_is_skipped_not_passed() -> None:
    # "PASS Match the certificate name" under Postfix may read as if it had been checked.
    import asyncio

    from mxlens_lab.world import Lab
    from probes.diagnose import diagnose
    from probes.interpret.connectors import judge
    from probes.report import Report

    async def healthy() -> Report:
        async with Lab(["healthy"]) as lab:
            report = Report(lab.domain("healthy"), lab.options("healthy"))
            async for event in diagnose(lab.domain("healthy"), lab.options("healthy")):
                report.add(event)
            return report

    report = asyncio.run(healthy())
    may = judge(report, "postfix-may").walk
    for name in ("chain_trusted", "name_match", "revocation", "mta_sts", "dane"):
        assert may.step(name).status == "skip", name
    assert may.step("name_match").evidence[0] == (
        "not checked: postfix-may does not check the certificate name"
    )
    # A sender that honours the domain's MTA-STS enforce checks chain and name.
    sts = judge(report, "mta-sts").walk
    assert sts.step("name_match").status == "pass"
    assert sts.step("chain_trusted").status == "pass"
