"""A hostile MTA-STS host serves a policy of thousands of bad lines: the finding names the
first few and counts the rest, instead of one 259 KB summary flooding the Findings pane."""

from __future__ import annotations

from probes.checks.mtasts import MAX_ERRORS_SHOWN
from probes.model.events import FindingRaised
from tests.test_mtasts import POLICY_PATH, Reply, World, checked, dns_server, world

__all__ = ["dns_server", "world"]  # the real DNS and HTTPS servers of test_mtasts


async def test_ten_thousand_bad_lines_become_a_short_finding(world: World) -> None:
    body = b"version: STSv1\r\n" + b"x\r\n" * 10_000
    world.https.routes[POLICY_PATH] = Reply(body=body[: 64 * 1024])
    events = await world.run(["mx1.example.test"])
    found = [e.finding for e in events if isinstance(e, FindingRaised)]
    invalid = [f for f in found if f.id == "mtasts.policy_invalid"]
    assert len(invalid) == 1
    summary = invalid[0].summary
    assert len(summary) < 1000, len(summary)
    assert summary.count("no ':' in") == MAX_ERRORS_SHOWN
    assert "more" in summary and "and " in summary
    error = checked(events).error or ""
    assert len(error) < 1000
