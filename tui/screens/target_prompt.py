"""The prompt for a new target ("/" or "g"): a domain, or an MX host name.

In the lab (`mxlens demo`, `--lab`) it also lists the lab's domains with what each one
breaks, filtered as the user types, so a new user can see what there is to try.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

Choice = tuple[str, str]  # (domain, one-line description)


def chosen(choices: Sequence[Choice], typed: str) -> str:
    """What Enter in the lab prompt means: a short name ("expired") or words that leave one
    domain in the list stand for that domain; anything else is taken as typed."""
    if not choices or "." in typed:
        return typed
    short = [d for d, _ in choices if d.lower().startswith(typed.lower() + ".")]
    if short:
        return short[0]
    left = matching(choices, typed)
    return left[0][0] if len(left) == 1 else typed


def matching(choices: Sequence[Choice], typed: str) -> list[Choice]:
    """The choices whose domain or description contains every word typed (any case)."""
    words = typed.lower().split()
    return [c for c in choices if all(w in f"{c[0]} {c[1]}".lower() for w in words)]


class TargetPrompt(ModalScreen[str | None]):
    """Returns the stripped text, or None when the user gave up (Esc, ctrl+g, empty Enter)."""

    # Esc is unreliable over some SSH links, so an empty Enter and ctrl+g also cancel.
    BINDINGS = [
        Binding("escape,ctrl+g", "give_up", "Cancel", id="prompt_cancel"),
        Binding("down", "to_list", "Choose from the list", show=False),
    ]

    def __init__(self, current: str | None = None, choices: Sequence[Choice] = ()) -> None:
        super().__init__(id="target-prompt")
        self._current = current or ""
        self._choices = list(choices)

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-box") as box:
            box.border_title = "Diagnose a domain"
            if self._choices:
                hint = "Lab domain to check (type to filter, Down to pick; a short name will do)."
                example = self._choices[0][0]
            else:
                hint = "Domain to check (e.g. example.org)."
                example = "example.org"
            yield Static(Text(f"{hint} Enter to start; empty Enter or ctrl+g cancels."))
            yield Input(value=self._current, placeholder=example, id="target-input")
            if self._choices:
                yield OptionList(id="target-choices")

    def on_mount(self) -> None:
        # No box when the app is ending (a SIGTERM right at start-up) as this mounts.
        for box in self.query(Input):
            box.focus()
        # The current target is pre-filled (selected, so typing replaces it): list them all.
        self._fill("")

    def _fill(self, typed: str) -> None:
        if not self._choices:
            return
        olist = self.query_one(OptionList)
        olist.clear_options()
        width = max(len(d) for d, _ in self._choices)
        olist.add_options(
            Option(Text(f"{domain:<{width}}  {about}"), id=domain)
            for domain, about in matching(self._choices, typed)
        )

    @on(Input.Changed)
    def _typed(self, event: Input.Changed) -> None:
        # The pre-filled current target filters nothing: it is replaced by the first key.
        self._fill("" if event.value == self._current else event.value)

    def action_to_list(self) -> None:
        if self._choices and self.query_one(OptionList).option_count:
            olist = self.query_one(OptionList)
            olist.focus()
            if olist.highlighted is None:
                olist.highlighted = 0

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = chosen(self._choices, event.value.strip())
        self.dismiss(value or None)

    def action_give_up(self) -> None:
        self.dismiss(None)
