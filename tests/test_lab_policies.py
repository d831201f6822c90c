"""Lab scenarios judged under every sender policy.

- The scenarios that declare `grades` get exactly those grades from `check --policy P`, for
  every policy (a real diagnosis per policy), and re-grading one diagnosis for P gives the
  same grades (so the re-grading below stands for `--policy P`).
- No finding graded error says mail still flows, in any lab scenario under any policy.

Real sockets on loopback (the lab); no mocks.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from mxlens_lab.scenarios import POLICIES, SCENARIOS
from mxlens_lab.world import Lab
from probes.diagnose import diagnose
from probes.interpret.connectors import regrade_for_policy
from probes.model.events import Finding
from probes.model.options import Policy
from probes.report import Report

pytestmark = pytest.mark.lab

GRADED = sorted(n for n, s in SCENARIOS.items() if s.grades)

# What an error-graded text must not claim: that the mail gets through anyway. (A claim
# with its condition, "senders that check no certificate deliver unless the domain publishes
# MTA-STS enforce", is allowed: where the condition holds, grade() replaces the text.)
FLOWS = re.compile(
    r"still deliver|mail flows|nothing breaks|not affected|harmless|deliver in clear text"
    r"|fall back to clear text",
    re.IGNORECASE,
)


async def _diagnose(lab: Lab, name: str, **overrides: object) -> Report:
    options = lab.options(name, **overrides)
    domain = lab.scenarios[name].domain
    report = Report(domain, options)
    async for event in diagnose(domain, options):
        report.add(event)
    return report


def _grades(findings: list[Finding]) -> dict[str, str]:
    return {f.id: f.severity for f in findings if f.severity != "ok"}


def test_graded_scenarios_cover_every_policy() -> None:
    assert GRADED, "no scenario declares grades"
    for name in GRADED:
        grades = SCENARIOS[name].grades
        assert set(grades) == set(POLICIES), name
        for policy, by_id in grades.items():
            assert set(by_id) == set(SCENARIOS[name].expect), (name, policy)


async def test_exact_grades_under_every_policy() -> None:
    wrong: list[str] = []
    async with Lab(scenarios=GRADED) as lab:
        for name in GRADED:
            strict = await _diagnose(lab, name)
            for policy in POLICIES:
                want = SCENARIOS[name].grades[policy]
                report = await _diagnose(lab, name, policy=policy)
                got = _grades(report.findings)
                if got != want:
                    wrong.append(f"{name} --policy {policy}: want {want}, got {got}")
                regraded = _grades(regrade_for_policy(strict, policy))
                if regraded != got:
                    wrong.append(f"{name} regraded for {policy}: {regraded} != {got}")
    assert not wrong, "\n".join(wrong)


@pytest.fixture(scope="module")
def every_report() -> dict[str, Report]:
    async def run() -> dict[str, Report]:
        names = sorted(SCENARIOS)
        async with Lab(scenarios=names) as lab:
            sem = asyncio.Semaphore(8)

            async def one(name: str) -> tuple[str, Report]:
                async with sem:
                    return name, await _diagnose(lab, name)

            return dict(await asyncio.gather(*(one(n) for n in names)))

    return asyncio.run(run())


@pytest.mark.parametrize("policy", POLICIES)
def test_no_error_says_mail_still_flows(every_report: dict[str, Report], policy: Policy) -> None:
    bad = []
    for name, report in sorted(every_report.items()):
        for f in regrade_for_policy(report, policy):
            if f.severity == "error" and FLOWS.search(f.detail):
                bad.append(f"{name}: {f.id}: {FLOWS.search(f.detail)!r} in {f.detail!r}")
    assert not bad, "\n".join(bad)


def test_the_text_names_the_policy_that_makes_it_an_error(every_report: dict[str, Report]) -> None:
    # untrusted: MTA-STS enforce makes the chain matter to everyone, and the text says so.
    (f,) = [f for f in regrade_for_policy(every_report["untrusted"], "opportunistic")
            if f.id == "cert.untrusted"]  # fmt: skip
    assert f.severity == "error" and "MTA-STS policy in enforce mode" in f.detail
    # untrusted-sts-testing: nothing published; validating senders refuse, others deliver.
    (g,) = [g for g in regrade_for_policy(every_report["untrusted-sts-testing"], "verify")
            if g.id == "cert.untrusted"]  # fmt: skip
    assert g.severity == "error" and "MTA-STS policy in enforce mode" not in g.detail
    # dane-ee-expired: DANE accepts it, MTA-STS does not; the text says both.
    (h,) = [h for h in regrade_for_policy(every_report["dane-ee-expired"], "strict")
            if h.id == "cert.expired"]  # fmt: skip
    assert h.severity == "error" and "validates MTA-STS and not DANE" in h.detail
