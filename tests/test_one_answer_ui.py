"""The real UI's walk screen opens on the step `check --walk --json` names as first_failure,
for the scenarios of issue 10 (tests/test_one_answer.py covers every scenario and profile
through the objects the UI shows)."""

from __future__ import annotations

import asyncio
import io
import json
import shlex
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from mxlens_lab.world import Lab
from tests.support.ui import LARGE, lab_fixture, open_app, wait_done
from tui.cli import main
from tui.screens.walk_screen import WalkScreen

pytestmark = [pytest.mark.ui, pytest.mark.lab]

SCENARIOS = ["mx-pool", "dane-ee-expired", "handshake-after-certificate", "untrusted-sts-testing"]
lab = lab_fixture(SCENARIOS)


def _cli_first_failure(lab: Lab, name: str) -> object:
    """`mxlens check --walk --json` with the lab's plumbing (the command line --lab prints)."""
    out = io.StringIO()
    with redirect_stdout(out):
        args = shlex.split(lab.check_command(name))[2:]  # after "mxlens check"
        main(["check", "--walk", "--json", *args])
    return json.loads(out.getvalue())["first_failure"]


@pytest.mark.parametrize("name", SCENARIOS)
async def test_the_walk_screen_opens_where_the_cli_says_mail_stops(
    lab: Lab, tmp_path: Path, name: str
) -> None:
    expected = await asyncio.to_thread(_cli_first_failure, lab, name)
    assert expected is not None
    app = open_app(lab, name, tmp_path)
    async with app.run_test(size=LARGE) as pilot:
        await wait_done(pilot, app)
        await pilot.press("w")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, WalkScreen)
        assert screen.current is not None and screen.current.name == expected
        assert screen.walk.first_failure == expected
