"""One answer on every screen: `check --walk --json`, the UI's walk, the connector verdict and
the ticket name the same first failing step, for every lab scenario and every connector
profile (and for no connector at all).

Each scenario is diagnosed once (real lab sockets); the headless paths are the real ones
(`tui.cli._check_extras`, which `check --walk --json --connector P --ticket-to F` runs, and
`ticket_markdown`, which the UI's `m` runs). The UI's walk is the connector's walk (or
build_walk) that the walk screen opens on; a Pilot test at the end checks in the real UI that
the screen opens on that step for the scenarios of issue 10.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from mxlens_lab.scenarios import SCENARIOS
from mxlens_lab.world import Lab
from probes.diagnose import diagnose
from probes.interpret.connectors import PROFILES, failing_step, judge
from probes.interpret.ticket import ticket_markdown
from probes.interpret.walk import build_walk
from probes.report import Report
from tui.cli import _check_extras

pytestmark = pytest.mark.lab

_FAIL_ROW = re.compile(r"\(`(?P<step>[a-z_]+)`\) \| \*\*FAIL\*\*")
_AT_STEP = re.compile(r"at step (?P<step>[a-z_]+)")


def _ticket_first(markdown: str) -> str | None:
    m = _FAIL_ROW.search(markdown)
    return m.group("step") if m else None


def _verdict_step(verdict: str) -> str | None:
    m = _AT_STEP.search(verdict)
    return m.group("step") if m else None


@pytest.fixture(scope="module")
def reports() -> dict[str, Report]:
    async def run() -> dict[str, Report]:
        names = sorted(SCENARIOS)
        async with Lab(scenarios=names) as lab:
            sem = asyncio.Semaphore(8)

            async def one(name: str) -> tuple[str, Report]:
                async with sem:
                    options = lab.options(name)
                    domain = lab.scenarios[name].domain
                    report = Report(domain, options)
                    async for event in diagnose(domain, options):
                        report.add(event)
                    return name, report

            return dict(await asyncio.gather(*(one(n) for n in names)))

    return asyncio.run(run())


def _cli(report: Report, connector: str | None, ticket: Path) -> tuple[dict[str, object], str]:
    """What `check --walk --json [--connector P] --ticket-to T` prints and saves."""
    ns = argparse.Namespace(walk=True, connector=connector, ticket=None, ticket_to=str(ticket))
    out, err = io.StringIO(), io.StringIO()
    saved = list(report.findings)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            _check_extras(report, ns, as_json=True)
    finally:
        report.findings = saved  # the CLI re-grades in place; the next profile starts afresh
    doc: dict[str, object] = json.loads(out.getvalue())
    return doc, ticket.read_text("utf-8")


@pytest.mark.parametrize("profile", [None, *PROFILES])
def test_every_front_end_names_the_same_first_failing_step(
    reports: dict[str, Report], profile: str | None, tmp_path: Path
) -> None:
    wrong: list[str] = []
    failing = 0
    for name, report in sorted(reports.items()):
        original = report.options
        if profile is not None and PROFILES[profile].needs_name:
            # The connector's TlsDomain: the MX names of the lab are mx1.<domain>.
            domain = report.target_ascii or report.target
            report.options = replace(original, expect_name=f"*.{domain}")
        try:
            doc, ticket = _cli(report, profile, tmp_path / f"{name}.md")
            if profile is None:
                walk = build_walk(report)  # what the UI's walk screen opens
                ui_ticket = ticket_markdown(report)  # the UI's `m`
                verdict_step = walk.first_failure
            else:
                result = judge(report, profile, report.options.expect_name)
                walk = result.walk  # the UI keeps the connector and walks it
                ui_ticket = ticket_markdown(report, connector=result)
                connector = doc["connector"]
                assert isinstance(connector, dict)
                verdict_step = _verdict_step(str(connector["verdict"]))
                step = failing_step(walk, PROFILES[profile])
                assert (step.name if step else None) == verdict_step, (name, connector)
        finally:
            report.options = original
        answers = {
            "check --walk --json": doc["first_failure"],
            "UI walk": walk.first_failure,
            "connector verdict": verdict_step,
            "ticket (--ticket-to)": _ticket_first(ticket),
            "ticket (UI m)": _ticket_first(ui_ticket),
        }
        if len(set(answers.values())) != 1:
            wrong.append(f"{name} / {profile}: {answers}")
        failing += doc["first_failure"] is not None
    assert not wrong, "\n".join(wrong)
    assert failing >= 10, "almost nothing fails: the comparison would prove little"
