"""The prompt for a new target ("/" or "g"): a domain, or an MX host name."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class TargetPrompt(ModalScreen[str | None]):
    """Returns the stripped text, or None when the user gave up (Esc, ctrl+g, empty Enter)."""

    # Esc is unreliable over some SSH links, so an empty Enter and ctrl+g also cancel.
    BINDINGS = [Binding("escape,ctrl+g", "give_up", "Cancel", id="prompt_cancel")]

    def __init__(self, current: str | None = None) -> None:
        super().__init__(id="target-prompt")
        self._current = current or ""

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-box") as box:
            box.border_title = "Diagnose a domain"
            yield Static(
                Text(
                    "Domain to check (e.g. example.org). Enter to start; empty Enter or ctrl+g cancels."
                )
            )
            yield Input(value=self._current, placeholder="example.org", id="target-input")

    def on_mount(self) -> None:
        # No box when the app is ending (a SIGTERM right at start-up) as this mounts.
        for box in self.query(Input):
            box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value.strip()
        self.dismiss(value or None)

    def action_give_up(self) -> None:
        self.dismiss(None)
