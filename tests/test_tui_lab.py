"""The UI on the real engine and the built-in lab (loopback only): every key, real scenarios.

One lab (in a background thread, its own event loop) serves every test of this module; each
test opens the app on one scenario's domain with `lab.options(name)`, exactly as
`mxlens demo <domain>` does.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from textual.widgets import Input

from mxlens_lab.world import Lab
from tests.support.ui import (
    LAB_SIZE,
    SMALL,
    lab_fixture,
    make_app,
    open_app,
    screen_text,
    terminal_bytes,
    wait_done,
)
from tui.screens.help_screen import HelpScreen
from tui.screens.target_prompt import TargetPrompt

pytestmark = [pytest.mark.ui, pytest.mark.lab]

SCENARIOS = [
    "healthy",
    "incomplete-chain",
    "expired",
    "no-starttls",
    "ocsp-unreachable",
    "hostile",
    "silent",
]
lab = lab_fixture(SCENARIOS)


async def test_healthy_every_key(lab: Lab, tmp_path: Path) -> None:
    app = open_app(lab, "healthy", tmp_path)
    async with app.run_test(size=LAB_SIZE) as pilot:
        await wait_done(pilot, app)
        text = screen_text(app)
        assert "OK   no problems healthy.lab.test" in text.splitlines()[0]
        assert "OK   10 mx1.healthy.lab.test" in text
        assert "MTA-STS: enforce" in text and "TLS-RPT: mailto:tlsrpt@healthy.lab.test" in text
        assert "FAIL" not in text and "WARN" not in text
        # 1-5 each focus their pane; the pane bar marks it.
        expected = {
            1: "mx1.healthy.lab.test covered",
            2: "C:  QUIT",
            3: "[sent] mx1.healthy.lab.test",
            4: "URLs for this address's chain",
            5: "No findings: nothing wrong was seen on this route.",
        }
        for n, shown in expected.items():
            await pilot.press(str(n))
            await pilot.pause()
            assert app.active_pane == n and app.focused is app.pane(n).focus_target()
            assert f">{n} " in screen_text(app).splitlines()[0]
            assert shown in screen_text(app), (n, shown)
        lines = app.transcript_pane.lines
        shown = [str(lines.get_option_at_index(i).prompt) for i in range(lines.option_count)]
        assert any("TLS established: TLSv1.3" in line for line in shown)
        assert any("C:  STARTTLS" in line for line in shown)
        assert "trusted (trust store:" in screen_text(app) and "NOT trusted" not in screen_text(app)
        # Tab / shift+tab cycle.
        await pilot.press("tab")
        assert app.active_pane == 1
        await pilot.press("shift+tab", "shift+tab")
        assert app.active_pane == 4
        # t: the side probes' own lines (TLS version sweep) appear in the transcript.
        before = app.transcript_pane.lines.option_count
        await pilot.press("t")
        await pilot.pause()
        assert app.transcript_pane.lines.option_count > before
        prompts = [
            str(app.transcript_pane.lines.get_option_at_index(i).prompt)
            for i in range(app.transcript_pane.lines.option_count)
        ]
        assert any("[tls-versions]" in p for p in prompts)
        await pilot.press("t")
        await pilot.pause()
        assert app.transcript_pane.lines.option_count == before
        # f: the firewall list names the lab's CA endpoint host and port.
        await pilot.press("f")
        await pilot.pause()
        assert app.clipboard == f"pki.lab.test:{lab.http_port}\n"
        assert app.last_export is not None and app.last_export.is_file()
        # ? and F1: help, closed again.
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)
        # r: a second real run gives the same verdict.
        first = app.run_id
        await pilot.press("r")
        await pilot.pause(0.05)
        await wait_done(pilot, app)
        assert app.run_id == first + 1 and "OK   no problems" in screen_text(app)
        # c while running: cancelled, every pane says so, r is offered.
        # (the "silent" server never answers, so the run is still going when c arrives)
        await pilot.press("slash")
        await pilot.pause()
        app.screen.query_one(Input).value = lab.domain("silent")
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert app.running
        await pilot.press("c")
        await wait_done(pilot, app)
        assert app.cancelled and "cancelled, r = rerun" in screen_text(app).splitlines()[0]
        # ctrl+c when idle quits cleanly.
        await pilot.press("ctrl+c")
        await pilot.pause()
    assert app.return_code == 0


async def test_new_target_and_quit_on_the_lab(lab: Lab, tmp_path: Path) -> None:
    app = open_app(lab, "healthy", tmp_path)
    async with app.run_test(size=LAB_SIZE) as pilot:
        await wait_done(pilot, app)
        # "/" asks for a domain: the no-STARTTLS domain of the same lab.
        await pilot.press("slash")
        await pilot.pause()
        assert isinstance(app.screen, TargetPrompt)
        app.screen.query_one(Input).value = lab.domain("no-starttls")
        await pilot.press("enter")
        await pilot.pause(0.05)
        await wait_done(pilot, app)
        text = screen_text(app)
        assert app.target == "no-starttls.lab.test"
        assert "FAIL tls.starttls_not_offered no-starttls.lab.test" in text.splitlines()[0]
        assert "FAIL 10 mx1.no-starttls.lab.test" in text
        assert "FAIL tls.starttls_not_offered" in text
        # The transcript shows the EHLO answer without STARTTLS, and where it stopped.
        assert "250 8BITMIME" in text and "C:  STARTTLS" not in text
        assert "session stopped at: starttls" in text
        assert "this address never got to a TLS handshake" in text
        # "g" is the other key for the prompt; ctrl+g gives up without a new run.
        run = app.run_id
        await pilot.press("g")
        await pilot.pause()
        assert isinstance(app.screen, TargetPrompt)
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert app.run_id == run and not isinstance(app.screen, TargetPrompt)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_incomplete_chain_shows_the_aia_intermediate(lab: Lab, tmp_path: Path) -> None:
    app = open_app(lab, "incomplete-chain", tmp_path)
    async with app.run_test(size=LAB_SIZE) as pilot:
        await wait_done(pilot, app)
        text = screen_text(app)
        assert "FAIL cert.incomplete_chain incomplete-chain.lab.test" in text.splitlines()[0]
        assert "FAIL 127." in text  # the address's own status word
        assert "NOT trusted as sent: complete only via AIA" in text
        assert "[aia] incomplete-chain-ca" in text and "[sent] mx1.incomplete-chain" in text
        # Enter on the finding jumps to the chain pane.
        await pilot.press("5")
        app.findings_bar.olist.highlighted = 0
        await pilot.press("enter")
        await pilot.pause()
        assert app.active_pane == 3
        assert "FAIL cert.incomplete_chain" in screen_text(app)


async def test_expired_certificate(lab: Lab, tmp_path: Path) -> None:
    app = open_app(lab, "expired", tmp_path)
    async with app.run_test(size=LAB_SIZE) as pilot:
        await wait_done(pilot, app)
        await pilot.press("5")
        ids = [f.id for f in app.findings_bar.findings]
        assert "cert.expired" in ids
        app.findings_bar.olist.highlighted = ids.index("cert.expired")
        await pilot.press("enter")
        await pilot.pause()
        assert app.active_pane == 3
        text = screen_text(app)
        assert "FAIL cert.expired" in text
        detail = str(app.chain_pane.query_one("#chain-detail").render())
        flat = " ".join(detail.split())  # long rows wrap under their own text
        assert re.search(r"Valid .* \(EXPIRED \d+ days ago\)", flat), detail
        assert "FAIL [sent] mx1.expired.lab.test" in text


async def test_ocsp_unreachable_endpoint_pane(lab: Lab, tmp_path: Path) -> None:
    app = open_app(lab, "ocsp-unreachable", tmp_path)
    async with app.run_test(size=SMALL) as pilot:  # the small terminal: one pane at a time
        await wait_done(pilot, app)
        assert (
            "WARN ca.ocsp_unreachable ocsp-unreachable.lab.test" in screen_text(app).splitlines()[0]
        )
        await pilot.press("5")
        await pilot.pause()
        ids = [f.id for f in app.findings_bar.findings]
        app.findings_bar.olist.highlighted = ids.index("ca.ocsp_unreachable")
        await pilot.press("enter")
        await pilot.pause()
        assert app.active_pane == 4 and app.pane(4).display and not app.pane(5).display
        text = screen_text(app)
        assert "1 failing" in text
        # The cursor row is the failing OCSP URL, spelled out in full under the table.
        failing = app.endpoints_pane.highlighted()
        assert failing is not None and failing.kind == "ocsp" and not failing.ok
        assert f"FAIL OCSP {failing.url}" in text
        assert "HTTP 404" in text
        await pilot.press("f")
        await pilot.pause()
        assert app.clipboard == f"pki.lab.test:{lab.http_port}\n"


async def test_hostile_lab_server_stays_inert(lab: Lab, tmp_path: Path) -> None:
    app = open_app(lab, "hostile", tmp_path)
    async with app.run_test(size=LAB_SIZE) as pilot:
        await wait_done(pilot, app)
        await pilot.press("2")
        assert app.transcript_pane.jump(0)  # the greeting
        await pilot.pause(0.2)
        first = str(app.transcript_pane.lines.get_option_at_index(0).prompt)
        assert "220 [bold red]mx1[/] ␛[2J" in first, first
        text = screen_text(app)
        # Markup stays literal text; control characters are shown, not obeyed.
        assert "220 [bold red]mx1[/] ␛[2J␛[31mESMTP␛[0m" in text
        assert "␛]0;pwned␇" in text and "<U+202E>" in text
        assert "[bold" in text
        svg = app.export_screenshot()
        assert "[bold&#160;red]mx1[/]" in svg or "[bold red]mx1[/]" in html.unescape(svg)
        assert "\x1b" not in svg and "\x07" not in svg and "\x9b" not in svg
        stream = terminal_bytes(app)
        for raw in ("\x1b[2J", "\x1b]0;", "\x07", "\x9b", "\u202e"):
            assert raw not in stream, repr(raw)
        assert "␛[2J" in stream  # the same bytes, made visible


async def test_demo_mode_runs_the_lab(tmp_path: Path) -> None:
    app = make_app(tmp_path, "expired.lab.test", source=None, lab=True)
    async with app.run_test(size=LAB_SIZE) as pilot:
        await wait_done(pilot, app)
        assert app.target == "expired.lab.test" and app.error is None
        assert "FAIL cert.expired" in screen_text(app)
        assert app._lab is not None
    assert app._lab is None  # the lab was stopped on exit
