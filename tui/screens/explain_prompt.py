"""The bounce decoder prompt ("x"): paste an NDR or a mail log line, read what it means, and
start the check of what it names: the recipient domain, through the host the bounce names
(as `mxlens explain --run` does).

Decoding (probes.interpret.explain) is pure and linear in the first MAX_TEXT characters, but
a paste of a whole mailbox still costs milliseconds per change: it runs in a thread once the
text has been quiet for DEBOUNCE seconds, so typing and pasting never wait for it. The pasted
text is hostile like network text: the decoding shown is built by `explain.to_text`,
which passes every extracted string through `safetext.visible()`, and is rendered as a
`rich.text.Text`, never as markup.
"""

from __future__ import annotations

import re
from functools import partial

from rich.console import Console
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Static, TextArea
from textual.worker import Worker, WorkerState

from probes.interpret.explain import Explanation, explain, to_text
from probes.model.errors import CheckError

from ..safe import hanging
from . import page

HINT = "Paste a bounce (NDR) or a mail log line: it is decoded below as you type."
KEYS_NONE = "Nothing to check yet  PgUp/PgDn scroll  Esc/^g close"
KEYS_TARGET = "ctrl+r check {target}  PgUp/PgDn scroll  Esc/^g close"
# Quiet time after the last edit before the text is decoded: a paste arrives as many edits.
DEBOUNCE = 0.15


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
        self._wanted: str | None = None  # the text to decode (the box's latest)
        self._shown: str | None = None  # the text the decoding on screen belongs to
        self._timer: Timer | None = None
        self._check_when_decoded = False

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
            self._schedule(self._initial)

    def on_resize(self) -> None:
        # the hanging indents are wrapped to the width: redo them once the layout is known
        self.call_after_refresh(self._show)

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        event.stop()
        self._schedule(event.text_area.text)

    @property
    def pending(self) -> bool:
        """True while the decoding shown is not that of the box's text."""
        return self.query_one(TextArea).text != (self._shown or "")

    def _schedule(self, text: str) -> None:
        self._wanted = text
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(DEBOUNCE, self._start_decode)

    def _start_decode(self) -> None:
        self._timer = None
        if self._wanted is None:
            return
        self.run_worker(
            partial(_decode, self._wanted),
            thread=True,
            exclusive=True,
            group="explain-decode",
            exit_on_error=False,
        )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group != "explain-decode" or event.state != WorkerState.SUCCESS:
            return
        result = worker.result
        assert isinstance(result, tuple)
        text, explanation = result
        if text != self._wanted:
            return  # the box changed meanwhile; the newer decoding is on its way
        self.explanation = explanation
        self._shown = text
        self._show()
        if self._check_when_decoded:
            self._check_when_decoded = False
            self.action_run_check()

    def _show(self) -> None:
        if not self.is_mounted:
            return
        result = self.query_one("#explain-result", Static)
        keys = self.query_one("#explain-keys", Static)
        if self.explanation is None:
            result.update(Text("Nothing pasted yet."))  # or only blanks
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
        if self.pending:
            # ctrl+r right after a paste: check what the box holds, not the previous text
            self._check_when_decoded = True
            return
        if self.explanation is None or self.explanation.target() is None:
            self.notify("No domain or host found in the text: nothing to check.", markup=False)
            return
        self.dismiss(self.explanation)

    def action_scroll_result(self, direction: int) -> None:
        page(self.query_one("#explain-scroll", VerticalScroll), direction)

    def action_give_up(self) -> None:
        self.dismiss(None)


def _decode(text: str) -> tuple[str, Explanation | None]:
    """Runs in a worker thread: the text with its decoding (None for empty text)."""
    try:
        return text, explain(text)
    except CheckError:
        return text, None
