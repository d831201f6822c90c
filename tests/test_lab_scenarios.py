"""Every lab scenario: `mxlens check` reports exactly the findings the scenario declares.

These tests talk to the lab's real sockets (DNS, SMTP, HTTP, HTTPS on loopback): no mocks.
"""

from __future__ import annotations

import pytest

from mxlens_lab.scenarios import SCENARIOS
from mxlens_lab.world import Lab
from probes.report import Report
from tests.support.collect import collect

pytestmark = pytest.mark.lab


async def check(lab: Lab, name: str) -> Report:
    options = lab.options(name)
    domain = lab.scenarios[name].domain
    return await collect(domain, options)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_scenario_reports_exactly_its_findings(name: str) -> None:
    async with Lab(scenarios=[name]) as lab:
        report = await check(lab, name)
    scenario = lab.scenarios[name]
    got = {f.id for f in report.findings if f.severity != "ok"}
    detail = "\n".join(f"{f.severity} {f.id} {f.where}: {f.summary}" for f in report.findings)
    assert got == set(scenario.expect), f"{name}: {scenario.description}\n{detail}"
    if not scenario.expect:
        assert report.exit_code() == 0
