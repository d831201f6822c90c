"""The UI on the real engine and the built-in lab (loopback only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.world import Lab
from tui.app import MxLensApp

pytestmark = [pytest.mark.ui, pytest.mark.lab]


def screen_text(app: MxLensApp) -> str:
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def wait_done(pilot, app: MxLensApp) -> None:  # type: ignore[no-untyped-def]
    for _ in range(600):
        if app.run_id and not app.running:
            break
        await pilot.pause(0.05)
    await pilot.pause(0.1)
    assert app.run_id and not app.running


async def test_demo_mode_runs_the_lab(tmp_path: Path) -> None:
    from probes.options import Options

    app = MxLensApp(
        None,
        Options(),
        lab=True,
        keymap_path=tmp_path / "k",
        export_dir=tmp_path,
        theme="ansi-dark",
    )
    async with app.run_test(size=(140, 50)) as pilot:
        await wait_done(pilot, app)
        assert app.target == "healthy.lab.test"
        assert app.error is None
        text = screen_text(app)
        assert "OK   10 mx1.healthy.lab.test" in text
        assert "trusted by" in text and "[sent] mx1.healthy.lab.test" in text
        assert "FAIL" not in text
        assert app._lab is not None
    assert app._lab is None  # the lab was stopped on exit


async def test_hostile_lab_server_stays_inert(tmp_path: Path) -> None:
    async with Lab(["hostile"]) as lab:
        app = MxLensApp(
            lab.domain("hostile"),
            lab.options("hostile"),
            keymap_path=tmp_path / "k",
            export_dir=tmp_path,
            theme="ansi-dark",
        )
        async with app.run_test(size=(140, 50)) as pilot:
            await wait_done(pilot, app)
            pane = app.transcript_pane
            shown = [
                str(pane.lines.get_option_at_index(i).prompt)
                for i in range(pane.lines.option_count)
            ]
            assert any("␛" in line for line in shown), shown[:5]
            assert not any("\x1b" in line for line in shown)
            everything = "".join(
                seg.text for strip in app.screen._compositor.render_strips() for seg in strip
            )
            assert "\x1b" not in everything and "\x07" not in everything
