"""The walk-through: every lab scenario stops where the scenario says, via `check --walk --json`.

One lab serves every scenario (real DNS, SMTP, HTTP(S) sockets on loopback); each domain is
diagnosed once and its walk built the way `mxlens check --walk --json` builds it.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from mxlens_lab.scenarios import SCENARIOS
from mxlens_lab.scenarios import STEPS as LAB_STEPS
from mxlens_lab.world import Lab
from probes.interpret.walk import STEP_OF, STEPS, VERDICT, build_walk, walk_text
from probes.model.findings import catalog
from probes.report import Report
from tests.support.collect import collect
from tui.cli import main


async def _diagnose_all(names: list[str]) -> dict[str, Report]:
    async with Lab(scenarios=names) as lab:
        sem = asyncio.Semaphore(8)

        async def one(name: str) -> tuple[str, Report]:
            async with sem:
                options = lab.options(name)
                domain = lab.scenarios[name].domain
                return name, await collect(domain, options)

        return dict(await asyncio.gather(*(one(n) for n in names)))


def _walk_json(report: Report) -> dict[str, object]:
    """What `check --walk --json` prints, through JSON and back."""
    doc = report.to_json()
    doc.update(build_walk(report).to_json())
    loaded: dict[str, object] = json.loads(json.dumps(doc))
    return loaded


def test_steps_match_the_contract_and_every_catalog_id_has_a_step() -> None:
    assert STEPS == LAB_STEPS
    assert set(catalog()) <= set(STEP_OF), sorted(set(catalog()) - set(STEP_OF))
    assert set(STEP_OF.values()) <= set(STEPS) | {VERDICT}


@pytest.mark.lab
async def test_every_scenario_first_failure_is_its_breaks() -> None:
    reports = await _diagnose_all(sorted(SCENARIOS))
    wrong = []
    for name, report in sorted(reports.items()):
        scenario = SCENARIOS[name]
        doc = _walk_json(report)
        walk = doc["walk"]
        assert isinstance(walk, list)
        assert [s["step"] for s in walk] == list(STEPS)
        assert all(s["status"] in ("pass", "fail", "skip") for s in walk)
        failed = [s["step"] for s in walk if s["status"] == "fail"]
        assert doc["first_failure"] == (failed[0] if failed else None)
        # `breaks` is where the scenario's one change shows. When that change is an error
        # under the scenario's policy (or stops the session: no 220 greeting), the step
        # fails; a warning or info only marks the step (notes) and mail still flows.
        errors = {f.id for f in report.findings if f.severity == "error"}
        stops = any(
            s.outcome in ("connect", "greeting", "ehlo")
            for mx in report.mx.values()
            for s in mx.sessions.values()
        )
        if errors or stops:
            got = doc["first_failure"]
        else:
            assert doc["first_failure"] is None, name
            got = doc["first_concern"]
        if got != scenario.breaks:
            wrong.append(
                f"{name}: breaks={scenario.breaks} got={got} ({walk_text(build_walk(report))})"
            )
        step = next((s for s in walk if s["step"] == scenario.breaks), None)
        if step is not None:
            ids = set(step["findings"]) | set(step["notes"])
            assert ids & scenario.expect, f"{name}: step {scenario.breaks} names {ids}"
            if step["status"] == "fail":
                assert step["why"] and step["evidence"], name
    assert not wrong, "\n".join(wrong)


@pytest.mark.lab
async def test_pool_walk_follows_the_first_mx_and_names_the_other() -> None:
    reports = await _diagnose_all(["pool-inconsistent"])
    walk = build_walk(reports["pool-inconsistent"])
    assert walk.route is not None and walk.route.host.startswith("mx1.")
    assert walk.first_failure == "chain_trusted"
    assert walk.step("chain_trusted").findings == ("cert.expired",)
    assert "pool.inconsistent" in walk.verdict_notes
    assert any("mx2." in line for line in walk.elsewhere)


@pytest.mark.lab
def test_check_walk_json_and_text_from_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "--lab", "--walk", "--json", "starttls-refused.lab.test"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 2
    assert doc["schema"] == "mxlens/1"
    assert doc["first_failure"] == "starttls_accepted"
    steps = {s["step"]: s for s in doc["walk"]}
    assert steps["starttls_accepted"]["findings"] == ["tls.starttls_refused"]
    assert steps["handshake"]["status"] == "skip"
    assert any("454" in e for e in steps["starttls_accepted"]["evidence"])

    code = main(["check", "--lab", "--walk", "hostile.lab.test"])
    out = capsys.readouterr().out
    assert code == 0
    assert "PASS greeting" in out and "first failure: none" in out
    assert "\x1b" not in out and "\x9b" not in out  # the hostile banner is shown inert


@pytest.mark.lab
async def test_mx_pool_at_one_preference_says_what_a_sender_does() -> None:
    reports = await _diagnose_all(["mx-pool", "pool-inconsistent", "incomplete-chain"])
    walk = build_walk(reports["mx-pool"])
    assert walk.route is not None and walk.route.host.startswith("mx1.")
    assert walk.first_failure == "chain_trusted"
    assert walk.fallback is not None and walk.fallback.host.startswith("mx2.")
    assert walk.delivers
    assert "gets through, late or only via mx2." in walk.verdict
    assert "share preference 10" in walk.verdict and "tries mx2." in walk.verdict
    doc = _walk_json(reports["mx-pool"])
    assert doc["walk_delivers"] is True
    fallback = doc["walk_fallback"]
    assert isinstance(fallback, dict) and fallback["preference"] == 10
    # A backup MX at a lower preference: tried next, so mail arrives late.
    backup = build_walk(reports["pool-inconsistent"])
    assert backup.fallback is not None and "(preference 20), late" in backup.verdict
    # One MX only: nothing to fall back to; mail fails.
    alone = build_walk(reports["incomplete-chain"])
    assert alone.fallback is None and not alone.delivers and " fails at step " in alone.verdict
