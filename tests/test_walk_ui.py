"""The walk screen, the connector form and the ticket key in the real UI on the lab (Pilot)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import OptionList, Static

from mxlens_lab.world import Lab
from probes.interpret.connectors import PROFILES
from tests.support.ui import LARGE, lab_fixture, open_app, screen_text, wait_done
from tui.app import MxLensApp
from tui.screens.connector_form import ConnectorForm
from tui.screens.walk_screen import WalkScreen

pytestmark = [pytest.mark.ui, pytest.mark.lab]

SCENARIOS = ["healthy", "no-starttls", "expired", "starttls-refused"]
lab = lab_fixture(SCENARIOS)


def highlighted_step(app: MxLensApp) -> str:
    screen = app.screen
    assert isinstance(screen, WalkScreen)
    step = screen.current
    assert step is not None
    return step.name


def detail_text(app: MxLensApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


@pytest.mark.parametrize(
    ("name", "first", "pane"),
    [
        ("no-starttls", "starttls_offered", 2),
        ("expired", "chain_trusted", 3),
        ("starttls-refused", "starttls_accepted", 2),
    ],
)
async def test_walk_opens_on_the_first_failure_and_enter_jumps(
    lab: Lab, tmp_path: Path, name: str, first: str, pane: int
) -> None:
    app = open_app(lab, name, tmp_path)
    async with app.run_test(size=LARGE) as pilot:
        await wait_done(pilot, app)
        await pilot.press("w")
        await pilot.pause()
        assert highlighted_step(app) == first
        assert "FAIL" in detail_text(app, "#walk-detail")
        assert "Why:" in detail_text(app, "#walk-detail")
        await pilot.press("j")
        assert highlighted_step(app) != first
        await pilot.press("k")
        assert highlighted_step(app) == first
        await pilot.press("down", "up")
        assert highlighted_step(app) == first
        await pilot.press("enter")
        await pilot.pause()
        assert not isinstance(app.screen, WalkScreen)
        assert app.active_pane == pane
        assert app.selected is not None and app.selected[0].startswith("mx1.")


async def test_walk_on_healthy_passes_and_escape_closes(lab: Lab, tmp_path: Path) -> None:
    app = open_app(lab, "healthy", tmp_path)
    async with app.run_test(size=LARGE) as pilot:
        await wait_done(pilot, app)
        await pilot.press("w")
        await pilot.pause()
        assert highlighted_step(app) == "resolve_mx"
        labels = [str(o.prompt) for o in app.screen.query_one(OptionList)._options]
        assert sum("PASS" in label for label in labels) >= 12
        assert not any("FAIL" in label for label in labels)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, WalkScreen)


async def test_connector_form_regrades_and_ticket_includes_it(lab: Lab, tmp_path: Path) -> None:
    app = open_app(lab, "expired", tmp_path)
    async with app.run_test(size=LARGE) as pilot:
        await wait_done(pilot, app)
        runs = app.run_id
        await pilot.press("o")
        await pilot.pause()
        assert isinstance(app.screen, ConnectorForm)
        assert "FAILS" in detail_text(app, "#connector-verdict")  # exo-default honours MTA-STS
        for _ in range(list(PROFILES).index("postfix-encrypt")):
            await pilot.press("down")
        await pilot.pause()
        assert "This connector would deliver." in detail_text(app, "#connector-verdict")
        await pilot.press("enter")
        await pilot.pause()
        assert not isinstance(app.screen, ConnectorForm)
        assert app.connector is not None and app.connector.profile.name == "postfix-encrypt"
        assert app.run_id == runs  # re-graded, not probed again
        # The kept verdict stays in the top line after its notice fades.
        assert "OK   as postfix-encrypt" in screen_text(app).splitlines()[0]
        await pilot.press("m")
        await pilot.pause()
        saved = list((tmp_path / "export").glob("ticket-expired.lab.test-*.md"))
        assert len(saved) == 1 and app.last_export == saved[0]
        text = saved[0].read_text("utf-8")
        assert "postfix-encrypt" in text and "This connector would deliver." in text


async def test_walk_when_done_opens_the_walk_after_the_run(lab: Lab, tmp_path: Path) -> None:
    app = open_app(lab, "no-starttls", tmp_path)
    app.walk_when_done = True  # what `mxlens demo --walk` sets
    async with app.run_test(size=LARGE) as pilot:
        await wait_done(pilot, app)
        await pilot.pause(0.1)
        assert isinstance(app.screen, WalkScreen)
        assert highlighted_step(app) == "starttls_offered"
