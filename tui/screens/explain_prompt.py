"""The bounce decoder prompt ("x"): paste an NDR or a mail log line, read what it means, and
start the check of what it names: the recipient domain, through the host the bounce names
(as `mxlens explain --run` does).

Decoding is pure and fast (probes.interpret.explain), so it runs on every change of the text. The
pasted text is hostile like network text: the decoding shown is built by `explain.to_text`,
which passes every extracted string through `safetext.visible()`, and is rendered as a
`rich.text.Text`, never as markup.
"""

from __future__ import annotations

import re

from rich.console import Console
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static, TextArea

from probes.interpret.explain import Explanation, explain, to_text
from probes.model.errors import CheckError

from . import page
from .walk_screen import hanging

HINT = "Paste a bounce (NDR) or a mail log line: it is decoded below as you type."
KEYS_NONE = "Nothing to check yet  PgUp/PgDn scroll  Esc/^g close"
KEYS_TARGET = "ctrl+r check {target}  PgUp/PgDn scroll  Esc/^g close"


# "  meaning:  ", "Next: ": a label whose value wraps under itself, not under the label
_LABEL = re.compile(r"^(\s*[A-Za-z][A-Za-z ()/-]{0,30}:\s+|\s+)(?=\S)")


def decoded(text: str, width: int = 76, console: Console | None = None) -> Text:
    """`to_text` output with hanging indents, so a wrapped value stays readable at 80 columns.

    One `Text`, never markup: the values in it came from the pasted text.
    """
    rows: list[tuple[Text, Text]] = []
    for line in text.rstrip("\n").split("\n"):
        label = _LABEL.match(line)
        if label is None:
            rows.append((Text(), Text(line)))
        else:
            rows.append((Text(label.group(1)), Text(line[label.end() :])))
    return hanging(rows, width, console or Console(width=width))


class ExplainPrompt(ModalScreen[Explanation | None]):
    """Returns the Explanation to check (it names a domain or host), or None when the user
    closed the prompt. The app turns it into a check with `probes.interpret.explain.check_options`."""

    # Full screen up to 120x40, so at 80x24 the app's key bar (whose keys would type into
    # the text box here) is covered and the decoding gets every spare row. The key line at
    # the bottom names what ctrl+r would check, so it never scrolls out of sight.
    DEFAULT_CSS = """
    ExplainPrompt { align: center middle; }
    #explain-box {
        width: 100%; max-width: 120; height: 100%; max-height: 40;
        border: round $accent; padding: 0 1; background: $surface;
    }
    #explain-input { height: 7; }
    #explain-scroll { height: 1fr; scrollbar-gutter: stable; }
    #explain-keys { height: auto; color: $text-muted; }
    """

    BINDINGS = [
        Binding("ctrl+r,f5", "run_check", "Check it", id="explain_run"),
        Binding("escape,ctrl+g", "give_up", "Close", id="explain_cancel"),
        # priority: the text box would take them to move its cursor; the decoding is what
        # overflows at 80x24
        Binding("pagedown", "scroll_result(1)", "Scroll", show=False, priority=True),
        Binding("pageup", "scroll_result(-1)", "Scroll", show=False, priority=True),
    ]

    def __init__(self, text: str = "") -> None:
        super().__init__(id="explain-prompt")
        self._initial = text
        self.explanation: Explanation | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="explain-box") as box:
            box.border_title = "Explain a bounce"
            yield Static(Text(HINT), id="explain-hint")
            yield TextArea(
                self._initial, id="explain-input", soft_wrap=True, show_line_numbers=False
            )
            with VerticalScroll(id="explain-scroll"):
                yield Static(Text("Nothing pasted yet."), id="explain-result", markup=False)
            yield Static(Text(KEYS_NONE), id="explain-keys", markup=False)

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()
        if self._initial:
            self._decode(self._initial)

    def on_resize(self) -> None:
        # the hanging indents are wrapped to the width: redo them once the layout is known
        self.call_after_refresh(lambda: self._decode(self.query_one(TextArea).text))

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        event.stop()
        self._decode(event.text_area.text)

    def _decode(self, text: str) -> None:
        result = self.query_one("#explain-result", Static)
        keys = self.query_one("#explain-keys", Static)
        try:
            self.explanation = explain(text)
        except CheckError:  # empty text
            self.explanation = None
            result.update(Text("Nothing pasted yet."))
            keys.update(Text(KEYS_NONE))
            return
        scroll = self.query_one("#explain-scroll", VerticalScroll)
        width = scroll.scrollable_content_region.width or 76  # 0 before the first layout
        result.update(decoded(to_text(self.explanation), width, self.app.console))
        target = self.target()
        # the target is pasted text: made visible by explain, and shown as Text, not markup
        keys.update(Text(KEYS_TARGET.format(target=target) if target else KEYS_NONE))

    def target(self) -> str | None:
        """What the check would run on: the domain (the recipient domain, else the named
        host), and "via <host>" when the bounce names the host that failed."""
        if self.explanation is None:
            return None
        found = self.explanation.target()
        if found is None:
            return None
        domain, mx = found
        return f"{domain} via {mx}" if mx and mx != domain else domain

    def action_run_check(self) -> None:
        if self.explanation is None or self.explanation.target() is None:
            self.notify("No domain or host found in the text: nothing to check.", markup=False)
            return
        self.dismiss(self.explanation)

    def action_scroll_result(self, direction: int) -> None:
        page(self.query_one("#explain-scroll", VerticalScroll), direction)

    def action_give_up(self) -> None:
        self.dismiss(None)
