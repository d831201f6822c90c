"""The Textual UI driven with Pilot against the fake event stream (no network at all)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from textual.widgets import Input

from probes.model.errors import CheckError
from probes.model.options import Options
from tests.support.fake_stream import FAILING_URL, fake_diagnose
from tests.support.ui import SMALL, WIDE, finish, make_app, screen_segments, screen_text
from tui.screens.help_screen import HelpScreen
from tui.screens.target_prompt import TargetPrompt

pytestmark = pytest.mark.ui


async def test_panes_fill_in_from_the_stream(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(140, 64)) as pilot:
        await finish(pilot, app)
        text = screen_text(app)
        # MX hosts in preference order, addresses with PTR and a word status.
        assert text.index("10 mx1.example.org") < text.index("20 mx2.example.org")
        assert "FAIL 2001:db8::10 no PTR" in text
        assert "WARN 192.0.2.10 PTR mx1.example.org (confirmed)" in text
        assert "mx2.example.org NOT covered by the policy" in text
        assert "MTA-STS: enforce" in text
        # The first address drives the other panes.
        assert app.selected == ("mx1.example.org", "192.0.2.10")
        assert "+171.2 ms S:  221 2.0.0 Bye" in text  # the live view follows the end
        assert "TLS established: TLSv1.3 TLS_AES_256_GCM_SHA384" in text
        assert "[sent] mx1.example.org" in text and "[store] Fake Root CA" in text
        assert "timeout after 2.0 s" in text  # the failing endpoint row
        assert "5 URLs for this address's chain, 1 failing" in text
        # Findings worst first.
        assert text.index("FAIL smtp.connect_timeout") < text.index("WARN ca.crl_unreachable")
        assert text.index("WARN ca.crl_unreachable") < text.index("INFO tlsrpt.missing")
        assert "FAIL smtp.connect_timeout +2 FAIL +2 WARN" in text  # the cause, then the rest


async def test_hostile_text_is_inert(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await finish(pilot, app)
        app.transcript_pane.jump(0)  # the hostile banner
        await pilot.pause()
        text = screen_text(app)
        assert "+12.5 ms S:  220 [bold]mx1 ESMTP␛[31m red ␛]0;pwned␇ ready" in text
        assert "O=[bold]Evil␛[2J Corp" in text  # certificate subject in the detail view
        assert "good␛[5m [blink]" in text  # endpoint detail cell
        assert "\x1b" not in screen_segments(app)
        assert "\x07" not in screen_segments(app)
        svg = app.export_screenshot()
        assert "\x1b" not in svg and "\x07" not in svg
        assert "␛" in svg


async def test_arrow_keys_choose_the_address(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await finish(pilot, app)
        await pilot.press("1")
        assert app.focused is app.domain_pane.domain_tree
        await pilot.press("down")
        await pilot.pause()
        assert app.selected == ("mx1.example.org", "2001:db8::10")
        text = screen_text(app)
        assert "connect timed out after 2.0 s" in text
        assert "session stopped at: connect" in text
        await pilot.press("down", "down")
        await pilot.pause()
        assert app.selected == ("mx2.example.org", "192.0.2.20")
        text = screen_text(app)
        assert "220 mx2.example.org ESMTP Postfix" in text
        assert "[aia] Fake Intermediate CA" in text
        assert "NOT trusted" not in text


async def test_pane_keys_and_tab(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await finish(pilot, app)
        for n in (2, 3, 4, 5, 1):
            await pilot.press(str(n))
            assert app.active_pane == n
            assert app.focused is app.pane(n).focus_target()
            assert f">{n} " in screen_text(app).splitlines()[0]
        await pilot.press("tab")
        assert app.active_pane == 2
        await pilot.press("shift+tab", "shift+tab")
        assert app.active_pane == 5


async def test_narrow_terminal_shows_one_pane_at_a_time(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        await finish(pilot, app)
        first = screen_text(app).splitlines()[0]
        # Too narrow for every pane name: the verdict stays whole, the keys stay visible.
        assert first.startswith(
            ">1 Domain< 2 3 4 5 | FAIL smtp.connect_timeout +2 FAIL +2 WARN example.org"
        )
        await pilot.press("2")
        assert screen_text(app).splitlines()[0].startswith(" 1>2 Transcript< 3 4 5 |")
        await pilot.press("1")
        assert app.pane(1).display and not app.pane(2).display
        await pilot.press("4")
        await pilot.pause()
        assert app.pane(4).display and not app.pane(1).display
        text = screen_text(app)
        assert "4 Endpoints" in text.splitlines()[1]
        assert "crl.fake-ca.test" in text
        await pilot.press("tab")
        await pilot.pause()
        assert app.pane(5).display and "FAIL smtp.connect_timeout" in screen_text(app)
        footer = "\n".join(screen_text(app).splitlines()[-2:])
        for shown in (
            "q Quit",
            "/ Check",
            "r Rerun",
            "c Cancel",
            "f Firewall",
            "t Side",
            "? Help",
            "1-5 Pane",
            "Tab/S-Tab Next/prev",
            "^c Stop",
            "^p Palette",
        ):
            assert shown in footer, footer


async def test_no_color_keeps_status_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await finish(pilot, app)
        assert app.no_color
        text = screen_text(app)
        assert "FAIL 2001:db8::10" in text and "OK   [sent]" in text
        # No colour at all reaches the terminal: the terminal's own foreground/background
        # (a greyscale filter would turn ANSI colours into black on black on 16 colours).
        colours = {
            (seg.style.color, seg.style.bgcolor)
            for strip in app.screen._compositor.render_strips()
            for seg in strip
            if seg.style is not None
        }
        for fg, bg in colours:
            assert fg is None or fg.is_default, fg
            assert bg is None or bg.is_default, bg
        # The cursor line is still visible: reverse video, not a background colour.
        assert any(
            seg.style is not None and seg.style.reverse
            for strip in app.screen._compositor.render_strips()
            for seg in strip
        )


async def test_findings_jump_to_evidence(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await finish(pilot, app)
        await pilot.press("5")
        bar = app.findings_bar
        ids = [f.id for f in bar.findings]
        # transcript:0 on the IPv6 address
        bar.olist.highlighted = ids.index("smtp.connect_timeout")
        await pilot.press("enter")
        await pilot.pause()
        assert app.selected == ("mx1.example.org", "2001:db8::10")
        assert app.active_pane == 2
        assert app.transcript_pane.lines.highlighted == 0
        # cert:0 on mx2
        await pilot.press("5")
        bar.olist.highlighted = ids.index("cert.name_mismatch")
        await pilot.press("enter")
        await pilot.pause()
        assert app.selected == ("mx2.example.org", "192.0.2.20")
        assert app.active_pane == 3
        assert "FAIL cert.name_mismatch" in screen_text(app)
        detail = str(app.chain_pane.query_one("#chain-detail").render())
        assert "NOT in the certificate" in detail and "SAN        other.example.net" in detail
        # endpoint:<url>
        await pilot.press("5")
        bar.olist.highlighted = ids.index("ca.crl_unreachable")
        await pilot.press("enter")
        await pilot.pause()
        assert app.active_pane == 4
        table = app.endpoints_pane.table
        assert table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value == FAILING_URL


async def test_new_target_prompt_and_rerun(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await finish(pilot, app)
        first_run = app.run_id
        await pilot.press("slash")
        await pilot.pause()
        assert isinstance(app.screen, TargetPrompt)
        app.screen.query_one(Input).value = ""
        await pilot.press(*"other1.test")  # digits and tab-free text go to the input
        assert app.screen.query_one(Input).value == "other1.test"
        await pilot.press("enter")
        await finish(pilot, app)
        assert app.target == "other1.test" and app.run_id == first_run + 1
        assert "10 mx1.other1.test" in screen_text(app)
        # g opens the prompt too; an empty Enter gives up and keeps the old run
        await pilot.press("g")
        await pilot.pause()
        assert isinstance(app.screen, TargetPrompt)
        app.screen.query_one(Input).value = ""
        await pilot.press("enter")
        await pilot.pause()
        assert not isinstance(app.screen, TargetPrompt) and app.run_id == first_run + 1
        await pilot.press("r")
        await finish(pilot, app)
        assert app.run_id == first_run + 2 and app.target == "other1.test"


async def test_start_without_target_asks_for_one(tmp_path: Path) -> None:
    app = make_app(tmp_path, target=None)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, TargetPrompt)
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert not isinstance(app.screen, TargetPrompt)
        assert "press / to enter a domain" in screen_text(app)


async def test_cancel_and_ctrl_c(tmp_path: Path) -> None:
    slow = functools.partial(fake_diagnose, delay=0.3)
    app = make_app(tmp_path, source=slow)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.pause(0.1)
        assert app.running
        await pilot.press("c")
        await finish(pilot, app)
        assert app.cancelled
        assert "STOP" in screen_text(app) and "cancelled" in screen_text(app)
        await pilot.press("r")
        await pilot.pause(0.1)
        assert app.running
        await pilot.press("ctrl+c")  # mid-run: cancels, does not kill the app
        await finish(pilot, app)
        assert app.cancelled and app.is_running
        await pilot.press("ctrl+c")  # idle: a clean exit
        await pilot.pause()
    assert app.return_code == 0


async def test_quit_key(tmp_path: Path) -> None:
    app = make_app(tmp_path, source=functools.partial(fake_diagnose, delay=0.3))
    async with app.run_test(size=WIDE) as pilot:
        await pilot.pause(0.05)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_quit_while_events_are_still_queued(tmp_path: Path) -> None:
    """Leaving mid-run: events already posted must not reach panes being torn down (this
    raised NoMatches from the message handler before the guard)."""
    for wait in (0.0, 0.002, 0.004):
        app = make_app(tmp_path, source=functools.partial(fake_diagnose, delay=0.0))
        async with app.run_test(size=WIDE) as pilot:
            await pilot.pause(wait)
        assert app.return_code in (None, 0)
    app = make_app(tmp_path, source=functools.partial(fake_diagnose, delay=0.0))
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("q")
    assert app.return_code == 0


async def test_help_screen(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await finish(pilot, app)
        for open_key, close_key in (("question_mark", "q"), ("f1", "escape")):
            await pilot.press(open_key)
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
            assert "2 Transcript" in screen_text(app)
            help_body = str(app.screen.query_one("#help-text").render())
            assert "Remapping keys" in help_body and "keys.conf" in help_body
            assert "Copy the CA endpoint host:port list" in help_body
            await pilot.press(close_key)
            await pilot.pause()
            assert not isinstance(app.screen, HelpScreen)
        assert app.is_running


async def test_firewall_list(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await finish(pilot, app)
        await pilot.press("f")
        await pilot.pause()
        expected = "aia.fake-ca.test:80\ncrl.fake-ca.test:80\nocsp.fake-ca.test:80\n"
        assert app.clipboard == expected
        assert app.last_export is not None
        assert app.last_export.read_text().endswith(expected)
        assert str(app.last_export) in screen_text(app).replace("\n", "") or any(
            str(app.last_export) in str(n.message) for n in app._notifications
        )


async def test_side_probes_toggle(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await finish(pilot, app)
        before = app.transcript_pane.lines.option_count
        side = app.transcript_pane.query_one("#transcript-side")
        assert "press t to show" in str(side.render())
        await pilot.press("t")
        await pilot.pause()
        assert app.transcript_pane.lines.option_count > before
        app.transcript_pane.lines.scroll_end(animate=False)
        await pilot.pause()
        assert "[tls-versions]" in screen_text(app)
        await pilot.press("t")
        await pilot.pause()
        assert app.transcript_pane.lines.option_count == before


async def test_command_palette_lists_actions(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await finish(pilot, app)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"firewall")
        await pilot.pause(0.5)
        assert "Firewall (f)" in screen_text(app)
        await pilot.press("enter")
        await pilot.pause()
        assert app.clipboard.startswith("aia.fake-ca.test:80")


async def test_palette_has_one_quit_and_no_second_help(tmp_path: Path) -> None:
    # Textual's own Quit would skip cancelling a running diagnosis; its Keys panel would
    # compete with mxlens's help. Theme (useful for colour trouble) stays.
    app = make_app(tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await finish(pilot, app)
        titles = [c.title for c in app.get_system_commands(app.screen)]
    assert "Quit" not in titles and "Keys" not in titles
    assert "Theme" in titles


async def test_keymap_file_remaps_and_warns(tmp_path: Path) -> None:
    (tmp_path / "keys.conf").write_text("quit = x\npane_4 = f4\nbogus = y\n")
    app = make_app(tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await finish(pilot, app)
        assert any("unknown action 'bogus'" in str(n.message) for n in app._notifications)
        assert "f4 Endpoints" in screen_text(app).splitlines()[0]
        await pilot.press("f4")
        assert app.active_pane == 4
        await pilot.press("q")  # no longer quit
        await pilot.pause()
        assert app.is_running
        await pilot.press("x")
        await pilot.pause()
    assert app.return_code == 0


async def test_engine_errors_are_shown_not_raised(tmp_path: Path) -> None:
    async def bad_input(target: str, options: Options):  # type: ignore[no-untyped-def]
        raise CheckError("not a domain name: 'a b'")
        yield  # pragma: no cover

    async def broken(target: str, options: Options):  # type: ignore[no-untyped-def]
        async for event in fake_diagnose(target, options):
            yield event
            raise RuntimeError("boom")

    for source, words in ((bad_input, "not a domain name"), (broken, "internal error")):
        app = make_app(tmp_path, source=source)
        async with app.run_test(size=WIDE) as pilot:
            await finish(pilot, app)
            assert app.error is not None and words in app.error
            assert "could not check" in screen_text(app)
            # Pane 1 says why too, not a stale "resolving MX..."
            app.set_active_pane(1)
            await pilot.pause()
            assert f"could not check: {app.error}"[:40] in screen_text(app)
            assert "resolving MX" not in screen_text(app)
            assert app.is_running


async def test_policy_rows_take_the_graded_severity(tmp_path: Path) -> None:
    """Pane 1 marks the MTA-STS and DANE rows with the severity the findings were graded
    to (here a sender policy that only warns), never a FAIL of its own."""
    from probes.model.events import (
        AddressesResolved,
        DaneChecked,
        DiagnosisFinished,
        FindingRaised,
        MtaStsChecked,
        MxHost,
        MxResolved,
        TlsaRecord,
        Where,
    )
    from probes.model.findings import raise_finding

    mx = "mx.example.org"
    where = Where(mx, "192.0.2.10", 25)
    record = TlsaRecord(3, 1, 1, "ab" * 32)

    async def graded(target: str, options: Options):  # type: ignore[no-untyped-def]
        yield MxResolved(target, target, (MxHost(mx, 10),))
        yield AddressesResolved(mx, ("192.0.2.10",))
        yield MtaStsChecked(target, "v=STSv1; id=1", "1", None, None, None, (), "fetch: HTTP 404")
        yield DaneChecked(where, "NOERROR", True, (record,), None, 1)
        for fid, at in (("mtasts.fetch_failed", Where(target)), ("dane.tlsa_mismatch", where)):
            yield FindingRaised(raise_finding(fid, at, "graded down", severity="warning"))
        yield DiagnosisFinished(target, 5.0, "warning")

    app = make_app(tmp_path, source=graded)
    async with app.run_test(size=WIDE) as pilot:
        await finish(pilot, app)
        text = screen_text(app)
        assert "WARN MTA-STS: fetch: HTTP 404" in text
        assert "WARN DANE mx.example.org 1 TLSA, 1 usable DNSSEC ok no match" in text
        assert "FAIL" not in text


def test_one_pane_mapping_for_findings_and_walk_steps() -> None:
    from probes.interpret.walk import STEP_OF, STEPS
    from tui.app import pane_for

    assert pane_for("smtp.connect_timeout") == pane_for("tls") == pane_for("handshake") == 2
    assert pane_for("cert.expired") == pane_for("dane") == pane_for("name_match") == 3
    assert pane_for("ca.crl_unreachable") == pane_for("revocation") == 4
    assert pane_for("mtasts.testing") == pane_for("resolve_mx") == pane_for("verdict") == 1
    # a step's pane is the pane of the findings that fail it (revocation: mostly ca.*)
    for step in STEPS:
        panes = {pane_for(fid) for fid, s in STEP_OF.items() if s == step}
        assert pane_for(step) in panes, step
