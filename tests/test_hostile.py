"""Hostile and broken servers end in findings within the per-step time bounds, never a hang.

The bound asserted here is the tool's promise that every network step has its own timeout
(a diagnosis of one address takes a handful of steps), not a speed benchmark.
"""

from __future__ import annotations

import pytest

from mxlens_lab.world import Lab
from probes.diagnose import diagnose
from probes.model.events import DiagnosisFinished, Event, TranscriptLine
from tests.support.collect import collect

pytestmark = pytest.mark.lab

TIMEOUT = 1.0
STEPS_PER_ADDRESS = 12  # connect, greeting, EHLO, STARTTLS, handshake, EHLO, QUIT, side probes


@pytest.mark.parametrize(
    "name, finding",
    [
        ("silent", "smtp.timeout"),
        ("endless", "smtp.timeout"),
        ("connect-timeout", "smtp.connect_timeout"),
    ],
)
async def test_broken_server_ends_in_finding_within_bounds(name: str, finding: str) -> None:
    async with Lab(scenarios=[name]) as lab:
        options = lab.options(name, timeout=TIMEOUT)
        domain = lab.scenarios[name].domain
        events: list[Event] = []
        report = await collect(domain, options, events)
    finished = next((e for e in events if isinstance(e, DiagnosisFinished)), None)
    assert finished is not None
    assert finding in {f.id for f in report.findings}
    assert finished.elapsed_ms < TIMEOUT * 1000 * STEPS_PER_ADDRESS


async def test_endless_reply_is_capped_in_memory() -> None:
    async with Lab(scenarios=["endless"]) as lab:
        options = lab.options("endless", timeout=TIMEOUT)
        lines = [
            e
            async for e in diagnose(lab.scenarios["endless"].domain, options)
            if isinstance(e, TranscriptLine) and e.dir == "S"
        ]
    # A drip of bytes without CRLF never becomes an unbounded line in memory.
    assert all(len(line.text) <= 1024 for line in lines)
