"""Keys typed in one burst (a paste over SSH) land where the user meant them.

The driver delivers a paste as keys posted back to back; `app.post_message` for each key,
without waiting in between, is exactly that (Pilot's `press` waits after every key, which
hides the bug). Also: the `/` prompt in the lab lists the lab's domains and filters them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual import events
from textual.widgets import Input, OptionList

from tests.support.ui import SMALL, finish, make_app, screen_text
from tui.app import MxLensApp
from tui.screens.target_prompt import TargetPrompt, chosen, matching

pytestmark = pytest.mark.ui

_NAMES = {"/": "slash", "-": "minus", ".": "full_stop", "@": "at"}


def burst(app: MxLensApp, *keys: str) -> None:
    """Post keys as the terminal driver does for a paste: all at once, no pause."""
    for key in keys:
        if len(key) == 1:
            app.post_message(events.Key(_NAMES.get(key, key), key))
        else:
            app.post_message(events.Key(key, None))


@pytest.mark.parametrize(
    "keys",
    [
        ("/", *"name-mismatch.lab.test"),
        ("/", "ctrl+u", *"name-mismatch.lab.test"),
    ],
    ids=["slash-then-name", "slash-ctrl-u-then-name"],
)
async def test_a_burst_after_slash_reaches_the_prompt_whole(
    tmp_path: Path, keys: tuple[str, ...]
) -> None:
    # Before: the first characters were lost ("-mismatch.lab.test" was checked).
    app = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        await finish(pilot, app)
        burst(app, *keys, "enter")
        await pilot.pause(0.2)
        await finish(pilot, app)
        assert app.target == "name-mismatch.lab.test"
        assert not isinstance(app.screen, TargetPrompt)


async def test_a_burst_with_binding_keys_types_them_instead_of_running_them(
    tmp_path: Path,
) -> None:
    # "q" is quit and "w" the walk-through on the main screen; inside the burst they are text.
    app = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        await finish(pilot, app)
        burst(app, "/", *"qw.example")
        await pilot.pause(0.2)
        assert isinstance(app.screen, TargetPrompt)
        assert app.screen.query_one(Input).value == "qw.example"
        assert app.is_running


async def test_the_prompt_lists_lab_domains_with_descriptions_and_filters(
    tmp_path: Path,
) -> None:
    choices = [
        ("healthy.lab.test", "Everything right"),
        ("expired.lab.test", "The leaf expired two days ago"),
        ("expires-soon.lab.test", "The leaf expires in 5 days"),
    ]
    app = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        await finish(pilot, app)
        picked: list[str | None] = []
        app.push_screen(TargetPrompt(app.target, choices), picked.append)
        await pilot.pause()
        text = screen_text(app)
        assert "healthy.lab.test" in text and "Everything right" in text
        assert "e.g. example.org" not in text
        await pilot.press(*"expir")
        await pilot.pause()
        olist = app.screen.query_one(OptionList)
        assert [olist.get_option_at_index(i).id for i in range(olist.option_count)] == [
            "expired.lab.test",
            "expires-soon.lab.test",
        ]
        await pilot.press("down", "down", "enter")
        await pilot.pause()
        assert picked == ["expires-soon.lab.test"]


def test_filter_matches_every_word_in_domain_or_description() -> None:
    choices = [("a.lab.test", "leaf expired"), ("b.lab.test", "no STARTTLS")]
    assert matching(choices, "") == choices
    assert matching(choices, "LEAF exp") == [choices[0]]
    assert matching(choices, "b.lab starttls") == [choices[1]]
    assert matching(choices, "nothing") == []


def test_enter_takes_a_short_name_or_the_one_domain_left() -> None:
    choices = [("expired.lab.test", "leaf expired"), ("expires-soon.lab.test", "5 days left")]
    assert chosen(choices, "expired") == "expired.lab.test"  # a short name, not a prefix
    assert chosen(choices, "Expires-Soon") == "expires-soon.lab.test"
    assert chosen(choices, "5 days") == "expires-soon.lab.test"  # one domain left
    assert chosen(choices, "expir") == "expir"  # two left: as typed (the check then says why)
    assert chosen(choices, "partner.example") == "partner.example"  # a domain: as typed
    assert chosen([], "expired") == "expired"  # outside the lab: as typed


async def test_a_short_lab_name_and_enter_checks_that_domain(tmp_path: Path) -> None:
    choices = [("healthy.lab.test", "Everything right"), ("expired.lab.test", "expired")]
    app = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        await finish(pilot, app)
        picked: list[str | None] = []
        app.push_screen(TargetPrompt(app.target, choices), picked.append)
        await pilot.pause()
        await pilot.press(*"expired", "enter")
        await pilot.pause()
        assert picked == ["expired.lab.test"]


async def test_lab_mode_offers_every_scenario_without_a_lab_running(tmp_path: Path) -> None:
    from mxlens_lab.scenarios import SCENARIOS

    app = make_app(tmp_path)
    assert app._lab_choices() == []
    app._lab_mode = True  # as `mxlens demo` sets it, without starting the servers
    assert [d for d, _ in app._lab_choices()] == [s.domain for s in SCENARIOS.values()]


async def test_the_command_palette_closes_with_ctrl_g(tmp_path: Path) -> None:
    from textual.command import CommandPalette

    app = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        await finish(pilot, app)
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert isinstance(app.screen, CommandPalette)
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert not isinstance(app.screen, CommandPalette)
