"""The walk-through screen ("w"): the steps a sender takes, where mail stops, and why.

The list opens on the first failing step (else the first with a note). Up/down and j/k move
step by step; the text below says what was seen, why it breaks delivery and what to do
(PgUp/PgDn or space scroll it when it does not fit).
Enter closes the screen and hands the step back to the app, which jumps to the pane and line
holding its evidence (the same jump as for findings). Escape (or q, w) closes.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from probes.interpret.walk import Walk, WalkStep

from ..safe import hanging, safe_text
from . import page

KEYS_HINT = "Up/Down step  Enter evidence  PgUp/PgDn scroll text  q/Esc close"

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


def step_detail(step: WalkStep, width: int = 76, console: Console | None = None) -> Text:
    """Evidence, why and fix of one step; evidence and texts pass through safe_text.

    Wrapped lines keep their indent (evidence under the title, the text of Why/Fix under its
    word), so at 80 columns one item still reads as one item.
    """
    rows = [(Text(), Text(f"{step.title} ({step.name}): {_STATUS[step.status][0]}", "bold"))]
    rows += [(Text("  "), safe_text(line)) for line in step.evidence[:8]]
    rows += [(Text(word, "bold"), safe_text(text)) for word, text in _why_fix(step) if text]
    if step.refs:
        rows.append((Text(), Text("Enter: show the evidence in its pane", "dim")))
    return hanging(rows, width, console or Console(width=width))


def _why_fix(step: WalkStep) -> tuple[tuple[str, str], ...]:
    return (("Why: ", step.why), ("Fix: ", step.fix))


class WalkScreen(ModalScreen[WalkStep | None]):
    """Modal list of walk steps; dismisses with the chosen step (Enter) or None."""

    # The list and the text share the height: at 80x24 the list scrolls (the highlighted step
    # stays in view) so that why and fix of a failing step are not pushed off the screen.
    DEFAULT_CSS = """
    WalkScreen { align: center middle; }
    WalkScreen > #walk-box { width: 100%; max-width: 120; height: 100%; max-height: 40;
        border: round $accent; background: $surface; padding: 0 1; }
    WalkScreen #walk-steps { height: 1fr; border: none; padding: 0; }
    WalkScreen #walk-scroll { height: 1fr; margin-top: 1; scrollbar-gutter: stable; }
    WalkScreen #walk-keys { height: 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("escape,q,w", "close", "Close"),
        Binding("j", "move(1)", "Down", show=False),
        Binding("k", "move(-1)", "Up", show=False),
        # priority: the focused list would otherwise take them to move by pages
        Binding("pagedown,space", "scroll_detail(1)", "Scroll", show=False, priority=True),
        Binding("pageup", "scroll_detail(-1)", "Scroll", show=False, priority=True),
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
            with VerticalScroll(id="walk-scroll"):
                yield Static(id="walk-detail")
            yield Static(Text(KEYS_HINT), id="walk-keys")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.styles.max_height = max(1, len(self.walk.steps))
        start = self.walk.first_failure or self.walk.first_concern
        index = next((i for i, s in enumerate(self.walk.steps) if s.name == start), 0)
        options.highlighted = index
        options.focus()
        self._show(index)
        self.call_after_refresh(self._centre, index)

    def on_resize(self) -> None:
        # the hanging indents are wrapped to the width: redo them once the layout is known
        self.call_after_refresh(lambda: self._show(self.query_one(OptionList).highlighted))

    def _centre(self, index: int) -> None:
        # Show the steps after the selected one too (what was skipped because of it).
        options = self.query_one(OptionList)
        options.scroll_to(
            y=max(0, index - options.scrollable_content_region.height // 2), animate=False
        )

    @property
    def current(self) -> WalkStep | None:
        index = self.query_one(OptionList).highlighted
        return None if index is None else self.walk.steps[index]

    def _show(self, index: int | None) -> None:
        if index is None:
            return
        scroll = self.query_one("#walk-scroll", VerticalScroll)
        width = scroll.scrollable_content_region.width or 76  # 0 before the first layout
        detail = step_detail(self.walk.steps[index], width, self.app.console)
        if self.walk.elsewhere:
            # The verdict says "Other MX differ (N notes below)": these are the notes.
            label = Text("Other MX: ", "bold")
            rows = [
                (label if i == 0 else Text(" " * label.cell_len), safe_text(line))
                for i, line in enumerate(self.walk.elsewhere)
            ]
            detail.append("\n\n")
            detail.append_text(hanging(rows, width, self.app.console))
        self.query_one("#walk-detail", Static).update(detail)
        self.query_one("#walk-scroll", VerticalScroll).scroll_home(animate=False)

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

    def action_scroll_detail(self, direction: int) -> None:
        page(self.query_one("#walk-scroll", VerticalScroll), direction)

    def action_close(self) -> None:
        self.dismiss(None)
