"""What a helpdesk engineer tripped over at 80x24 over SSH, each pinned by a Pilot test.

Driven with the fake event stream (no network); the silent server is a stream that starts a
session and then never says anything more.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from textual.widgets import Input, OptionList

from probes.model.events import (
    AddressesResolved,
    DiagnosisFinished,
    Event,
    MxHost,
    MxResolved,
    SessionStarted,
    Where,
)
from probes.model.options import Options
from tests.support.fake_stream import fake_diagnose
from tests.support.ui import (
    LARGE,
    SMALL,
    WIDE,
    finish,
    make_app,
    messages,
    screen_text,
    wait_decoded,
)
from tui.screens.connector_form import ConnectorForm
from tui.screens.explain_prompt import ExplainPrompt
from tui.screens.walk_screen import KEYS_HINT as WALK_KEYS
from tui.screens.walk_screen import WalkScreen

pytestmark = pytest.mark.ui


async def clean_diagnose(target: str, options: Options) -> AsyncIterator[Event]:
    """A route with nothing wrong: no finding at all."""
    host = f"mx1.{target}"
    yield MxResolved(target, target, (MxHost(host, 10),))
    yield AddressesResolved(host, ("192.0.2.1",))
    await asyncio.sleep(0.01)
    yield DiagnosisFinished(target, 10.0, None)


async def silent_diagnose(target: str, options: Options) -> AsyncIterator[Event]:
    """A server that accepts the connection and never sends its greeting."""
    host = f"mx1.{target}"
    yield MxResolved(target, target, (MxHost(host, 10),))
    yield AddressesResolved(host, ("192.0.2.9",))
    yield SessionStarted(Where(host, "192.0.2.9", 25), "main")
    await asyncio.sleep(3600)
    yield DiagnosisFinished(target, 10.0, None)  # never reached: the user cancels


async def test_findings_pane_opens_on_the_worst_finding_and_enter_jumps(tmp_path: Path) -> None:
    # Before: nothing was highlighted, so the pane showed no why/fix and Enter did nothing.
    app = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        await finish(pilot, app)
        await pilot.press("5")
        await pilot.pause()
        assert app.findings_bar.olist.highlighted == 0
        text = screen_text(app)
        assert "Fix:" in text and "Enter: show the evidence" in text
        await pilot.press("enter")  # no arrow key first
        await pilot.pause()
        assert app.active_pane == 2  # smtp.connect_timeout: its transcript


async def test_findings_highlight_stays_where_the_user_put_it(tmp_path: Path) -> None:
    slow = functools.partial(fake_diagnose, delay=0.05)
    app = make_app(tmp_path, source=slow)
    async with app.run_test(size=WIDE) as pilot:
        for _ in range(200):  # wait for the first two findings
            if len(app.findings_bar.findings) >= 2:
                break
            await pilot.pause(0.02)
        await pilot.press("5", "down")
        await pilot.pause()
        # What the user now sees highlighted (more findings may arrive meanwhile and be
        # sorted in above it: the highlight must stay on this finding, not on this index).
        lst = app.findings_bar.olist
        assert lst.highlighted is not None
        chosen = app.findings_bar.findings[lst.highlighted]
        await finish(pilot, app)
        lst = app.findings_bar.olist
        assert lst.highlighted is not None
        assert app.findings_bar.findings[lst.highlighted] is chosen


async def test_findings_detail_is_not_cut_off_at_80x24(tmp_path: Path) -> None:
    # Before: the why/fix box was 6 rows high and the Fix sentence lost its end.
    app = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        await finish(pilot, app)
        await pilot.press("5")
        await pilot.pause()
        for index in range(len(app.findings_bar.findings)):
            app.findings_bar.olist.highlighted = index
            await pilot.pause()
            assert "Enter: show the evidence" in screen_text(app), index  # the last line


async def test_findings_pane_grows_while_active_in_the_grid(tmp_path: Path) -> None:
    # Before: at 120x40 the findings strip had 5 rows: one finding and a cut-off why.
    app = make_app(tmp_path)
    async with app.run_test(size=LARGE) as pilot:
        await finish(pilot, app)
        small = app.findings_bar.size.height
        await pilot.press("5")
        await pilot.pause()
        assert app.findings_bar.size.height >= 2 * small
        assert "Enter: show the evidence" in screen_text(app)
        await pilot.press("1")
        await pilot.pause()
        assert app.findings_bar.size.height == small


async def test_a_clean_run_keeps_the_keyboard_focus(tmp_path: Path) -> None:
    # Before: the empty findings list was hidden while it had the focus; the focus went
    # nowhere and the arrow keys and Enter did nothing until the user pressed a pane key.
    app = make_app(tmp_path, source=clean_diagnose)
    async with app.run_test(size=SMALL) as pilot:
        await finish(pilot, app)
        await pilot.press("5")
        await pilot.pause()
        assert "No findings: nothing wrong was seen on this route." in screen_text(app)
        await pilot.press("r")
        await finish(pilot, app)
        assert app.focused is app.findings_bar.olist
        assert "No findings" in screen_text(app)
        await pilot.press("enter")  # the verdict row cannot be chosen: nothing happens
        await pilot.pause()
        assert app.active_pane == 5


async def test_keys_that_need_a_finished_run_say_which_and_why(tmp_path: Path) -> None:
    # Before: m and o said "The walk-through needs a finished diagnosis."
    app = make_app(tmp_path, source=silent_diagnose)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause(0.1)
        await pilot.press("m")
        await pilot.pause()
        assert any(
            m.startswith("The ticket report needs a finished diagnosis: wait")
            for m in messages(app)
        )
        await pilot.press("c")
        await finish(pilot, app)
        await pilot.press("o")
        await pilot.pause()
        assert not isinstance(app.screen, ConnectorForm)
        assert any(
            m.startswith("The connector check needs a finished diagnosis")
            and "press r to run it again" in m
            for m in messages(app)
        )


async def test_a_new_run_clears_the_last_runs_toasts(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await finish(pilot, app)
        await pilot.press("f")
        await pilot.pause()
        assert any("Copied" in m for m in messages(app))
        await pilot.press("r")
        await finish(pilot, app)
        assert not any("Copied" in m for m in messages(app))


async def test_start_up_warnings_survive_the_first_run(tmp_path: Path) -> None:
    (tmp_path / "keys.conf").write_text("bogus = x\n")
    app = make_app(tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await finish(pilot, app)
        assert any("unknown action 'bogus'" in m for m in messages(app))


async def test_silent_server_shows_waiting_and_cancel_says_where(tmp_path: Path) -> None:
    # Before: a server that never answered left an empty transcript, during the wait and
    # after c: nothing told the user the probe was alive or where it was stuck.
    app = make_app(tmp_path, source=silent_diagnose)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause(0.1)
        await pilot.press("2")
        for _ in range(40):  # the header ticks twice a second, from 1 s on
            if "for an answer" in screen_text(app):
                break
            await pilot.pause(0.1)
        assert re.search(r"waiting [12] s for an answer", screen_text(app))
        assert app.running
        await pilot.press("c")
        await finish(pilot, app)
        text = screen_text(app)
        assert "!!  cancelled after 1." in text and "waiting for an answer" in text
        assert not re.search(r"waiting \d+ s", text)
        assert "STOP" in text and "cancelled" in text


async def test_bounce_naming_only_a_host_does_not_say_via_itself(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await finish(pilot, app)
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, ExplainPrompt)
        app.screen.query_one("#explain-input").insert(  # type: ignore[attr-defined]
            "Remote server at mx1.partner.test (192.0.2.7) returned "
            "'450 4.7.320 Certificate validation failed'"
        )
        await wait_decoded(pilot)
        await pilot.press("ctrl+r")
        await finish(pilot, app)
        assert app.target == "mx1.partner.test"
        assert not any(" via " in m for m in messages(app))


async def test_dialogs_close_without_esc(tmp_path: Path) -> None:
    # Esc is unreliable over SSH: every dialog has another key, and its key line names it.
    app = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        await finish(pilot, app)
        await pilot.press("o")
        await pilot.pause()
        assert isinstance(app.screen, ConnectorForm)
        assert "^g close" in screen_text(app)
        app.screen.query_one(Input).focus()
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert not isinstance(app.screen, ConnectorForm)
        assert app.connector is None
        await pilot.press("w")
        await pilot.pause()
        assert isinstance(app.screen, WalkScreen)
        assert "q/Esc close" in WALK_KEYS and "q/Esc close" in screen_text(app)
        await pilot.press("q")
        await pilot.pause()
        assert not isinstance(app.screen, WalkScreen)
        await pilot.press("x")
        await pilot.pause()
        assert "Esc/^g close" in screen_text(app)
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert not isinstance(app.screen, ExplainPrompt)


async def test_no_color_highlight_is_visible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: with NO_COLOR the highlighted row of a list (finding, walk step, profile) was
    # only bold, like the status words on every other row.
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        await finish(pilot, app)
        await pilot.press("5")
        await pilot.pause()
        lst = app.query_one("#findings-list", OptionList)
        row = lst.region.y  # the first option: the highlighted one
        strips = app.screen._compositor.render_strips()
        styles = [seg.style for seg in strips[row] if seg.text.strip() and seg.style]
        assert any(s.underline for s in styles)
        other = [seg.style for seg in strips[row + 2] if seg.text.strip() and seg.style]
        assert not any(s.underline for s in other)
