"""The audit screen on the real lab: one row per domain filling in as each finishes, Enter opens
that domain's diagnosis in the panes, Shift+A comes back, q leaves (and --resume continues)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.widgets import DataTable

from mxlens_lab.world import Lab
from probes.audit.inputs import parse
from probes.audit.journal import AuditJournal
from probes.audit.runner import Limits
from tests.support.ui import LAB_SIZE, lab_fixture, wait_done
from tui.app import MxLensApp
from tui.commands.audit import AuditSettings
from tui.screens.audit_screen import AuditScreen

pytestmark = [pytest.mark.ui, pytest.mark.lab]

lab = lab_fixture(["healthy", "expired", "no-starttls"])


async def test_rows_fill_in_and_enter_opens_the_diagnosis(lab: Lab, tmp_path: Path) -> None:
    items = parse("healthy.lab.test\nexpired.lab.test\nbad..name\nno-starttls.lab.test\n")
    options = lab.options()
    journal = AuditJournal.create(items, {"argv": []}, options, tmp_path / "h.sqlite3")
    settings = AuditSettings(options, Limits(jobs=2, rate=None), None, False, 1)
    screen = AuditScreen(journal, settings)
    app = MxLensApp(
        None,
        options,
        keymap_path=tmp_path / "keys.conf",
        export_dir=tmp_path / "export",
        theme="ansi-dark",
        audit_screen=screen,
    )
    try:
        async with app.run_test(size=LAB_SIZE) as pilot:
            assert app.screen is screen
            for _ in range(300):
                if screen.finished:
                    break
                await asyncio.sleep(0.05)
            assert screen.finished
            await pilot.pause()
            table = screen.query_one(DataTable)
            texts = [[str(c) for c in table.get_row(str(i.seq))] for i in items]
            assert [t[0].strip() for t in texts] == ["OK", "FAIL", "STOP", "FAIL"]
            assert texts[1][2] == "cert.expired" and texts[3][3] == "starttls_offered"
            assert "empty label" in texts[2][2]
            head = str(screen.query_one("#audit-head").render())
            assert "4/4" in head or "done" in head
            # Enter on the expired row: the panes diagnose that domain with the row's options.
            await pilot.press("down", "enter")
            assert app.screen is not screen and app.target == "expired.lab.test"
            await wait_done(pilot, app)
            assert app.report is not None and app.report.exit_code() == 2
            await pilot.press("A")
            assert app.screen is screen
            await pilot.press("q")
    finally:
        journal.close()
    again = AuditJournal.resume(journal.audit_id, tmp_path / "h.sqlite3")
    try:  # what the screen showed is what the history holds: --resume has nothing left
        assert [r["exit"] for r in again.ordered_rows()] == [0, 2, 3, 2]
        assert again.pending() == []
    finally:
        again.close()
