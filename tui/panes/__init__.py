"""The panes of the mxlens UI, one module each, and what they share.

Every pane receives every event (`add_event`), keeps what concerns it per MX address, and
shows the address the user chose (`show_address`). Panes never talk to the engine and never
to each other: the app routes events to them and selection between them.
"""

from __future__ import annotations

from textual.containers import Vertical
from textual.widget import Widget

from probes.model.events import Event, Where
from probes.report import Report

AddrKey = tuple[str, str]  # (MX host, address): one SMTP server as the domain pane lists it


def key_of(where: Where) -> AddrKey | None:
    """The address a located event belongs to; None when it concerns a whole host."""
    if where.address is None:
        return None
    return (where.host, where.address)


class Pane(Vertical):
    """A bordered pane with a number; subclasses fill `add_event` and `show_address`."""

    number: int = 0
    pane_title: str = ""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="pane")
        self.border_title = f"{self.number} {self.pane_title}"
        self.selected: AddrKey | None = None
        # The run's store, set by the app before the first event; it has taken each event
        # before the pane is told of it, so a pane asks it rather than keeping a copy.
        self.report: Report | None = None

    def focus_target(self) -> Widget:
        """The widget that takes focus when the user switches to this pane."""
        return self

    def add_event(self, event: Event) -> None:
        """Take one event of the running diagnosis (ignore what does not concern the pane)."""

    def show_address(self, key: AddrKey | None) -> None:
        """Show what is known about one MX address."""
        self.selected = key

    def reset(self) -> None:
        """Forget everything: a new diagnosis starts."""
        self.selected = None
