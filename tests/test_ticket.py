"""Ticket reports: Markdown and text, safe against hostile network text, saved where shown."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from probes.interpret.ticket import fenced, md, ticket_markdown, ticket_path, ticket_text
from probes.model.events import Event
from probes.model.options import Options
from probes.model.version import mxlens_version
from probes.report import Report
from tests.support.fake_stream import fake_diagnose
from tests.support.ui import LARGE, finish, make_app
from tui.cli import main


def test_md_escapes_markup_and_controls() -> None:
    out = md("[click](http://evil) <img src=x> `code` *b* \x1b[2J")
    assert "\x1b" not in out
    assert "\\[click\\]" in out and "\\<img" in out and "\\`code\\`" in out and "\\*b\\*" in out
    assert md("# heading").startswith("\\#")
    assert md("1. item") == "1\\. item"


def test_md_leaves_what_cannot_format_readable() -> None:
    # Plain-text ticket systems show Markdown as typed: "starttls\\_offered" was noise.
    assert md("mx1[192.0.2.1]:25 at starttls_offered: TLS_AES_256 -> ok") == (
        "mx1[192.0.2.1]:25 at starttls_offered: TLS_AES_256 -> ok"
    )
    assert md("_emphasis_ a&amp;b") == "\\_emphasis\\_ a\\&amp;b"
    assert md("[x]: http://evil.example") == "\\[x]: http://evil.example"  # a definition
    assert md("see [x][y]") == "see \\[x\\]\\[y\\]"


def test_fence_is_longer_than_any_backtick_run() -> None:
    block = fenced(["a ````` b", "plain"])
    first = block.splitlines()[0]
    assert first.startswith("``````") and block.endswith("``````")


@pytest.mark.lab
def test_check_ticket_md_for_a_hostile_banner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MXLENS_EXPORT_DIR", str(tmp_path))
    code = main(["check", "--lab", "--json", "--ticket", "md", "hostile.lab.test"])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.lstrip().startswith("{")  # stdout stays one JSON document
    saved = re.search(r"ticket report saved to (\S+)", captured.err)
    assert saved is not None
    path = Path(saved.group(1))
    assert path.parent == tmp_path and path.suffix == ".md"
    text = path.read_text("utf-8")
    assert text.startswith("# Mail to hostile.lab.test: OK")
    assert "| 4 | Receive the 220 greeting (`greeting`) | **PASS** |" in text
    assert "\x1b" not in text and "\x9b" not in text and "\u202e" not in text
    # Outside fences nothing of the banner can format or link ("<" is escaped; a lone
    # "[bold red]" with no "(" or "[" after it is plain text in Markdown, so it stays as
    # readable as it is); inside, it sits in a fenced block.
    body, _, transcript = text.partition("## SMTP transcript of the route")
    assert "[bold red]mx1[/]" in body and "\\<U+202E>" in body
    assert transcript.strip().startswith("```text") and "[bold red]" in transcript


@pytest.mark.lab
def test_check_ticket_text_to_a_file_with_connector(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "t" / "report.txt"
    code = main(
        [
            "check",
            "--lab",
            "--connector",
            "postfix-encrypt",
            "--ticket-to",
            str(target),
            "expired.lab.test",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1  # Postfix encrypt does not check the certificate: a warning only
    assert out.startswith("This connector would deliver.")
    text = target.read_text("utf-8")
    assert "Connector postfix-encrypt" in text and "WARN" not in text.split("\n", 1)[0]
    assert "chain_trusted" in text and "cert.expired" in text


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
