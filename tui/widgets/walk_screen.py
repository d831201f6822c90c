"""The walk-through screen ("w"): the steps a sender takes, where mail stops, and why.

The list opens on the first failing step (else the first with a note). Up/down and j/k move
step by step; the text below says what was seen, why it breaks delivery and what to do.
Enter closes the screen and hands the step back to the app, which jumps to the pane and line
holding its evidence (the same jump as for findings). Escape (or q, w) closes.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from probes.walk import Walk, WalkStep

from ..safe import safe_text

_STATUS = {"pass": ("PASS", "bold green"), "fail": ("FAIL", "bold red"), "skip": ("SKIP", "dim")}


def step_label(index: int, step: WalkStep) -> Text:
    """One list line: number, status word, title, finding ids (all our own text)."""
    word, style = _STATUS[step.status]
    out = Text(f"{index:2} ")
    out.append(word, style)
    out.append(f" {step.title}")
    ids = step.findings + step.notes
    if ids:
        out.append(f"  {' '.join(ids)}", "yellow" if step.status != "fail" else "red")
    return out


def step_detail(step: WalkStep) -> Text:
    """Evidence, why and fix of one step; evidence and texts pass through safe_text."""
    out = Text()
    out.append(f"{step.title} ({step.name}): {_STATUS[step.status][0]}\n", "bold")
    for line in step.evidence[:8]:
        out.append("  ")
        out.append_text(safe_text(line))
        out.append("\n")
    if step.why:
        out.append("Why: ", "bold")
        out.append_text(safe_text(step.why))
        out.append("\n")
    if step.fix:
        out.append("Fix: ", "bold")
        out.append_text(safe_text(step.fix))
        out.append("\n")
    if step.refs:
        out.append("Enter: show the evidence in its pane", "dim")
    return out


class WalkScreen(ModalScreen[WalkStep | None]):
    """Modal list of walk steps; dismisses with the chosen step (Enter) or None."""

    DEFAULT_CSS = """
    WalkScreen { align: center middle; }
    WalkScreen > #walk-box { width: 100%; max-width: 120; height: 100%; max-height: 40;
        border: round $accent; background: $surface; padding: 0 1; }
    WalkScreen #walk-steps { height: auto; max-height: 15; }
    WalkScreen #walk-detail { height: 1fr; overflow-y: auto; }
    """
    BINDINGS = [
        Binding("escape,q,w", "close", "Close"),
        Binding("j", "move(1)", "Down", show=False),
        Binding("k", "move(-1)", "Up", show=False),
    ]

    def __init__(self, walk: Walk, *, heading: str | None = None) -> None:
        super().__init__()
        self.walk = walk
        self.heading = heading

    def compose(self) -> ComposeResult:
        with Vertical(id="walk-box"):
            head = Text("Walk-through: ", "bold")
            head.append_text(safe_text(self.heading or self.walk.verdict))
            yield Static(head, id="walk-head")
            yield OptionList(
                *(Option(step_label(i, s), id=s.name) for i, s in enumerate(self.walk.steps, 1)),
                id="walk-steps",
            )
            yield Static(id="walk-detail")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        start = self.walk.first_failure or self.walk.first_concern
        index = next((i for i, s in enumerate(self.walk.steps) if s.name == start), 0)
        options.highlighted = index
        options.focus()
        self._show(index)

    @property
    def current(self) -> WalkStep | None:
        index = self.query_one(OptionList).highlighted
        return None if index is None else self.walk.steps[index]

    def _show(self, index: int | None) -> None:
        if index is None:
            return
        self.query_one("#walk-detail", Static).update(step_detail(self.walk.steps[index]))

    @on(OptionList.OptionHighlighted)
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._show(event.option_index)

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.walk.steps[event.option_index])

    def action_move(self, delta: int) -> None:
        options = self.query_one(OptionList)
        if delta > 0:
            options.action_cursor_down()
        else:
            options.action_cursor_up()

    def action_close(self) -> None:
        self.dismiss(None)
