"""The UI and the history: every finished diagnosis is recorded, the panes mark what changed
since the last check, `h` shows two runs side by side, and the ticket names the change."""

from __future__ import annotations

from pathlib import Path

import pytest

from mxlens_lab.scenarios import CertSpec
from mxlens_lab.world import LabThread
from probes.history.store import HistoryStore
from tests.support.ui import LAB_SIZE, make_app, open_app, screen_text, wait_done
from tui.app import MxLensApp
from tui.screens.history_screen import HistoryScreen

pytestmark = [pytest.mark.ui, pytest.mark.lab]


async def _recorded(pilot: object, app: MxLensApp, runs: int, db: Path) -> None:
    """Wait until the history worker has stored `runs` runs (it runs off the UI thread)."""
    for _ in range(200):
        if db.exists():
            with HistoryStore(db) as store:
                if store.count() >= runs and (runs < 2 or app.changes is not None):
                    return
        await pilot.pause(0.05)  # type: ignore[attr-defined]
    raise AssertionError(f"the UI did not record {runs} runs")


async def test_changed_since_the_last_check(tmp_path: Path, _private_state_dir: Path) -> None:
    db = _private_state_dir / "history.sqlite3"
    with LabThread(["healthy"]) as lab:
        app = open_app(lab, "healthy", tmp_path)
        async with app.run_test(size=LAB_SIZE) as pilot:
            await wait_done(pilot, app)
            await _recorded(pilot, app, 1, db)
            assert app.changes is None  # nothing to compare with yet
            assert "CHANGED" not in screen_text(app)
            lab.switch("healthy", cert=CertSpec(not_after_days=5), new_ca="healthy-renewed-ca")
            await pilot.press("r")
            await wait_done(pilot, app, after=1)
            await _recorded(pilot, app, 2, db)
            await pilot.pause(0.2)
            text = screen_text(app)
            assert "CHANGED since" in text  # the domain line
            assert "CHANGED: leaf, issuer, notAfter" in text  # the address and the leaf
            assert "NEW" in text and "cert.expires_soon" in text  # the findings list
            await pilot.press("3")
            await pilot.pause(0.2)
            text = screen_text(app)
            assert "Changed    since" in text  # the leaf's detail, under its failed checks
            assert "leaf certificate (SHA-256)" in text
            await pilot.press("h")
            await pilot.pause(0.3)
            assert isinstance(app.screen, HistoryScreen)
            text = screen_text(app)
            assert "run 1" in text and "run 2" in text
            assert "leaf notAfter changed from" in text and "new finding cert.expires_soon" in text
            await pilot.press("q")
            await pilot.pause(0.1)
            assert not isinstance(app.screen, HistoryScreen)
            await pilot.press("m")
            await pilot.pause(0.3)
            assert app.last_export is not None
            ticket = app.last_export.read_text("utf-8")
            assert "## Changes since the last check" in ticket
            assert "leaf issuer changed from" in ticket


async def test_history_screen_without_runs_and_no_history(
    tmp_path: Path, _private_state_dir: Path
) -> None:
    app = make_app(tmp_path)  # the fake event stream
    app.history = False
    async with app.run_test(size=LAB_SIZE) as pilot:
        await wait_done(pilot, app, after=None, polls=200, poll=0.02, settle=0.2)
        assert not (_private_state_dir / "history.sqlite3").exists()
        await pilot.press("h")
        await pilot.pause(0.2)
        assert isinstance(app.screen, HistoryScreen)
        assert "no check of example.org recorded" in screen_text(app)
