"""Tickets and the text report as a helpdesk pastes them: canonical names, the version, no
repeated evidence, plain text from the UI, sentences wrapped under their own start."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from probes.interpret.ticket import ticket_markdown, ticket_path, ticket_text
from probes.model.events import Event
from probes.model.options import Options
from probes.model.version import mxlens_version
from probes.report import Report
from tests.support.fake_stream import fake_diagnose
from tests.support.ui import LARGE, finish, make_app


def fake_report(target: str = "Example.ORG.") -> Report:
    async def collect() -> list[Event]:
        return [e async for e in fake_diagnose("example.org", Options(), delay=0.0)]

    report = Report(target, Options())
    for event in asyncio.run(collect()):
        report.add(event)
    return report


def test_ticket_names_the_domain_canonically_and_carries_the_version() -> None:
    report = fake_report()
    md = ticket_markdown(report)
    assert md.startswith("# Mail to example.org: ")
    assert f"with mxlens {mxlens_version()}," in md
    assert "Example.ORG." not in md.splitlines()[0]
    assert ticket_text(report).startswith(
        f"mxlens {mxlens_version()} ticket report for example.org"
    )
    assert ticket_path("Expired.Lab.Test.", "md", Path("/x")).name.startswith(
        "ticket-expired.lab.test-"
    )


@pytest.mark.lab
def test_where_it_stops_does_not_repeat_the_finding_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tui.cli import main

    target = tmp_path / "t.md"
    main(["check", "--lab", "--ticket-to", str(target), "Expired.Lab.Test."])
    capsys.readouterr()
    md = target.read_text("utf-8")
    assert md.startswith("# Mail to expired.lab.test: ERROR")
    summary = next(line for line in md.splitlines() if line.startswith("the server certificate"))
    _, _, stops = md.partition("## Where it stops")
    evidence = stops.partition("## Findings (worst first)")[0]
    assert summary not in evidence  # it is the finding's own line, just below
    assert "leaf: CN=mx1.expired.lab.test" in evidence  # the evidence itself stays


def test_text_report_wraps_long_sentences_under_their_start() -> None:
    text = fake_report("example.org").to_text(width=60)
    lines = text.splitlines()
    why = next(i for i, line in enumerate(lines) if line.startswith("          why: "))
    assert all(len(line) <= 60 or " " not in line.strip() for line in lines[why : why + 4])
    assert lines[why + 1].startswith(" " * 15) and lines[why + 1][15] != " "


@pytest.mark.ui
async def test_the_ui_saves_plain_text_tickets_too(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=LARGE) as pilot:
        await finish(pilot, app)
        await pilot.press("M")
        await pilot.pause()
        assert app.last_export is not None and app.last_export.suffix == ".txt"
        text = app.last_export.read_text("utf-8")
        assert text.startswith("mxlens ") and "# Mail to" not in text
        await pilot.press("m")
        await pilot.pause()
        assert app.last_export.suffix == ".md"
