"""Helpers shared by the tests that drive the Textual app (Pilot and snapshots).

One version of each: terminal sizes, building the app, waiting for a run to end, and reading
what the screen shows. Helpers with different behaviour in the files they came from keep each
behaviour behind a parameter, so every test waits and reads exactly as it did before.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from textual.pilot import Pilot

from probes.model.options import Options
from tests.support.fake_stream import fake_diagnose
from tui.app import MxLensApp

if TYPE_CHECKING:
    from mxlens_lab.world import Lab

# Terminal sizes (columns, rows).
SMALL = (80, 24)  # the smallest terminal we support: one pane at a time
LARGE = (120, 40)  # the usual big terminal: every pane in the grid
WIDE = (140, 44)  # room for long rows (addresses, transcript lines) without wrapping
LAB_SIZE = (140, 50)  # the tests on the lab's real scenarios

_FAKE: Any = object()  # "no source given": distinct from an explicit source=None


def make_app(
    tmp_path: Path,
    target: str | None = "example.org",
    options: Options | None = None,
    *,
    source: Any = _FAKE,
    lab: bool = False,
    theme: str = "ansi-dark",
) -> MxLensApp:
    """The app as the UI tests run it: keymap and exports inside tmp_path, a fixed theme.

    source defaults to the fake event stream; pass source=None for the real engine (with
    lab=True, or lab options from `open_app`)."""
    return MxLensApp(
        target,
        options if options is not None else Options(),
        source=fake_diagnose if source is _FAKE else source,
        lab=lab,
        keymap_path=tmp_path / "keys.conf",
        export_dir=tmp_path / "export",
        theme=theme,
    )


def open_app(lab: Lab, name: str, tmp_path: Path) -> MxLensApp:
    """The app on one lab scenario's domain, exactly as `mxlens demo <domain>` opens it."""
    return make_app(tmp_path, lab.domain(name), lab.options(name), source=None)


def lab_fixture(scenarios: Sequence[str]) -> Any:
    """A module-scoped `lab` fixture serving these scenarios: one lab, in its own thread, for
    every test of the module. Use as `lab = lab_fixture([...])` at module level."""

    @pytest.fixture(scope="module", name="lab")
    def _lab() -> Iterator[Lab]:
        from mxlens_lab.world import LabThread

        with LabThread(list(scenarios)) as running:
            yield running

    return _lab


async def wait_done(
    pilot: Pilot[Any],
    app: MxLensApp | None = None,
    *,
    after: int | None = 0,
    polls: int = 600,
    poll: float = 0.05,
    settle: float | None = 0.1,
    idle: bool = False,
    check: bool = True,
) -> None:
    """Wait until a run has ended, then let the screen settle.

    after: the run must be newer than this run id (0: any run at all has started and ended;
    None: only that no run is in progress, which holds before the first run too).
    polls x poll seconds is the time allowed. After it: pilot.pause(settle) when settle is a
    number, pilot.pause() (until idle) when idle is true, nothing when both are unset.
    check: fail if the run has not ended in time (otherwise return quietly, and whatever the
    test asserts next fails instead).
    """
    app = app if app is not None else _app_of(pilot)

    def done() -> bool:
        started = after is None or app.run_id > after
        return started and not app.running

    for _ in range(polls):
        if done():
            break
        await pilot.pause(poll)
    if idle:
        await pilot.pause()
    elif settle is not None:
        await pilot.pause(settle)
    if check:
        assert done(), f"the run did not finish (run {app.run_id}, running={app.running})"


async def finish(pilot: Pilot[Any], app: MxLensApp | None = None) -> None:
    """wait_done as the fake-stream tests use it: quick polls (the fake stream ends in well
    under a second), only "nothing running" required, then wait until idle."""
    await wait_done(pilot, app, after=None, polls=200, poll=0.02, settle=None, idle=True)


async def finished(pilot: Pilot[Any]) -> None:
    """wait_done as snap_compare's run_before: quick polls for the first run, until idle;
    the snapshot itself is the check."""
    await wait_done(pilot, polls=200, poll=0.02, settle=None, idle=True, check=False)


def _app_of(pilot: Pilot[Any]) -> MxLensApp:
    app = pilot.app
    assert isinstance(app, MxLensApp)
    return app


def screen_text(app: MxLensApp) -> str:
    """What the terminal shows, as plain text (one line per row)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def screen_segments(app: MxLensApp) -> str:
    """Every character the compositor would send for the screen's content (no escapes of
    Textual's own; those are added by the driver), to check nothing raw slipped through."""
    return "".join(
        segment.text for strip in app.screen._compositor.render_strips() for segment in strip
    )


def terminal_bytes(app: MxLensApp) -> str:
    """What the app would write to the terminal for a full redraw, escapes included."""
    update = app.screen._compositor.render_full_update()
    return update.render_segments(app.console)


def messages(app: MxLensApp) -> list[str]:
    """The texts of the toasts on screen now."""
    return [str(n.message) for n in app._notifications]


__all__: list[str] = [
    "LAB_SIZE",
    "LARGE",
    "SMALL",
    "WIDE",
    "finish",
    "finished",
    "lab_fixture",
    "make_app",
    "messages",
    "open_app",
    "screen_segments",
    "screen_text",
    "terminal_bytes",
    "wait_done",
]


async def wait_decoded(pilot: Pilot[Any], polls: int = 200, poll: float = 0.02) -> None:
    """Wait until the bounce decoder on screen shows the decoding of its box's text (it
    decodes in a thread after a quiet spell), then until idle."""
    from tui.screens.explain_prompt import ExplainPrompt

    for _ in range(polls):
        screen = pilot.app.screen
        if not isinstance(screen, ExplainPrompt) or not screen.pending:
            break
        await pilot.pause(poll)
    await pilot.pause()
