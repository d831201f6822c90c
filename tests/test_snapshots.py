"""SVG snapshots of the main screens at 80x24 and 120x40 (pytest-textual-snapshot).

The fake event stream feeds the app, so every byte is fixed: its timestamps and latencies
are constants, the run time in "done in ... s" is pinned below, and "days left" is computed
against a frozen date. Update after an intended change with:

    pytest tests/test_snapshots.py --snapshot-update

and look at the SVGs in tests/__snapshots__/test_snapshots/ before committing them.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from textual.pilot import Pilot

from probes import report
from probes.model.events import DiagnosisFinished, Event
from probes.model.options import Options
from tests.support.fake_stream import fake_diagnose
from tests.support.ui import LARGE, SMALL, finished, make_app, wait_decoded
from tui.panes import chain_pane

pytestmark = pytest.mark.ui

FROZEN_NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)


async def frozen_source(target: str, options: Options) -> AsyncIterator[Event]:
    async for event in fake_diagnose(target, options, delay=0.0):
        if isinstance(event, DiagnosisFinished):
            event = dataclasses.replace(event, elapsed_ms=412.0)
        yield event


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chain_pane, "expiry", functools.partial(report.expiry, now=FROZEN_NOW))
    for name in ("NO_COLOR", "MXLENS_THEME", "COLORTERM"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "120x40"])
def test_main_screen(snap_compare, tmp_path: Path, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    """After a run: pane 1 (80x24) or all five panes (120x40)."""
    assert snap_compare(
        make_app(tmp_path, source=frozen_source), terminal_size=size, run_before=finished
    )


@pytest.mark.parametrize("pane", ["2", "3", "4", "5"])
def test_each_pane_small(snap_compare, tmp_path: Path, pane: str) -> None:  # type: ignore[no-untyped-def]
    """At 80x24 one pane fills the screen; the number keys switch."""
    assert snap_compare(
        make_app(tmp_path, source=frozen_source),
        press=[pane],
        terminal_size=SMALL,
        run_before=finished,
    )


def test_findings_jump_large(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Enter on the first finding selects its address and highlights the transcript line."""
    assert snap_compare(
        make_app(tmp_path, source=frozen_source),
        press=["5", "enter"],
        terminal_size=LARGE,
        run_before=finished,
    )


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "120x40"])
def test_help_screen(snap_compare, tmp_path: Path, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(
        make_app(tmp_path, source=frozen_source),
        press=["question_mark"],
        terminal_size=size,
        run_before=finished,
    )


def test_truecolour_theme_large(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Textual's own theme, as a truecolour terminal gets it."""
    assert snap_compare(
        make_app(tmp_path, source=frozen_source, theme="textual-dark"),
        terminal_size=LARGE,
        run_before=finished,
    )


def test_no_color_small(snap_compare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """NO_COLOR: the terminal's default colours; every status still a word."""
    monkeypatch.setenv("NO_COLOR", "1")
    assert snap_compare(
        make_app(tmp_path, source=frozen_source),
        press=["5"],
        terminal_size=SMALL,
        run_before=finished,
    )


POSTFIX_LINE = (
    "Nov 20 10:00:01 relay postfix/smtp[4711]: 4F1A2C3D: to=<bob@example.org>, "
    "relay=mx1.example.org[192.0.2.25]:25, delay=1.2, dsn=4.7.4, status=deferred "
    "(TLS is required, but was not offered by host mx1.example.org[192.0.2.25])"
)


def test_walk_screen_small(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """80x24: the first failing step selected, and its evidence and why still on screen."""
    assert snap_compare(
        make_app(tmp_path, source=frozen_source),
        press=["w"],
        terminal_size=SMALL,
        run_before=finished,
    )


async def paste_bounce(pilot: Pilot) -> None:
    from textual.widgets import TextArea

    await finished(pilot)
    await pilot.press("x")
    await pilot.pause()
    box = pilot.app.focused
    assert isinstance(box, TextArea)
    box.insert(POSTFIX_LINE)  # an edit, like a paste: the decoder runs on the change
    await wait_decoded(pilot)


def test_explain_prompt_small(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """80x24: a Postfix line decoded, and the key line names what ctrl+r would check."""
    assert snap_compare(
        make_app(tmp_path, source=frozen_source), terminal_size=SMALL, run_before=paste_bounce
    )


def test_connector_form_small(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """80x24: the list shows names, the verdict below names the profile and stays visible."""
    assert snap_compare(
        make_app(tmp_path, source=frozen_source),
        press=["o", "down", "down"],
        terminal_size=SMALL,
        run_before=finished,
    )
