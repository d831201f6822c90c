"""Pane 2: the SMTP dialogue of the chosen address as it streams in.

"S:"/"C:" lines with the time since the session started, the TLS handshake steps between the
two EHLOs, a summary of what was negotiated, and errors or timeouts inline ("!!"). The side
probes (TLS version sweep, STARTTLS injection test) are folded into one summary line; "t"
shows their lines too, tagged with the probe's name.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import OptionList, Static

from probes.model.events import (
    Event,
    SessionFinished,
    SessionStarted,
    TlsNegotiated,
    TlsVersionsProbed,
    TranscriptLine,
    Where,
)
from probes.report import DialogueEvent, versions_text

from ..safe import join, safe_text
from . import AddrKey, Pane, key_of

_DIR = {
    "S": ("S:", "cyan"),
    "C": ("C:", "green"),
    "TLS": ("TLS", "magenta"),
    "!": ("!!", "bold red"),
}
_STAMP_WIDTH = 11
# A main session open this long without a new line gets "waiting N s for ..." in the header,
# so a server that never answers shows as waiting, not as a frozen screen.
_WAIT_SHOWN_AFTER = 1.0


@dataclass
class _Entry:
    purpose: str
    event: Event
    main_index: int | None  # index among the main session's TranscriptLines (evidence N)


_DIALOGUE_EVENTS = (
    SessionStarted,
    TranscriptLine,
    TlsNegotiated,
    SessionFinished,
    TlsVersionsProbed,
)


def _entry(event: DialogueEvent) -> _Entry:
    """How the pane files a dialogue event: the handshake summary belongs to the main
    session, the version sweep to its own probe; evidence names main lines by index."""
    if isinstance(event, TlsNegotiated):
        return _Entry("main", event, None)
    if isinstance(event, TlsVersionsProbed):
        return _Entry("tls-versions", event, None)
    main_index = (
        event.index if isinstance(event, TranscriptLine) and event.purpose == "main" else None
    )
    return _Entry(event.purpose, event, main_index)


def _stamp(ms: float | None) -> Text:
    if ms is None:
        return Text(" " * _STAMP_WIDTH)
    return Text(f"+{ms:.1f} ms".rjust(_STAMP_WIDTH), style="dim")


class TranscriptPane(Pane):
    number = 2
    pane_title = "Transcript"

    def compose(self) -> ComposeResult:
        yield Static(Text("(choose an MX address in pane 1)", "dim"), id="transcript-header")
        yield OptionList(id="transcript-list")
        yield Static(Text(""), id="transcript-side")

    def on_mount(self) -> None:
        self.reset()
        self.set_interval(0.5, self._tick)

    @property
    def lines(self) -> OptionList:
        return self.query_one("#transcript-list", OptionList)

    def focus_target(self) -> Widget:
        return self.lines

    def reset(self) -> None:
        super().reset()
        # View state only: the dialogue itself is the report's (`Report.dialogue`).
        self.show_side = False
        self._rendered = 0  # how much of the selected address's dialogue is on screen
        self._heard: dict[AddrKey, float] = {}  # UI clock: when an open session last spoke
        self._notes: dict[AddrKey, list[TranscriptLine]] = {}  # the UI's own "cancelled" lines
        self._option_of_main: dict[int, int] = {}
        self._shown = 0
        self.lines.clear_options()
        self._render_header()
        self._render_side()

    def _dialogue(self, key: AddrKey) -> list[DialogueEvent]:
        return self.report.dialogue(*key) if self.report is not None else []

    def _open(self) -> dict[AddrKey, Where]:
        return self.report.open_sessions() if self.report is not None else {}

    # ------------------------------------------------------------------ events

    def add_event(self, event: Event) -> None:
        where = getattr(event, "where", None)
        key = key_of(where) if isinstance(where, Where) else None
        if key is None or not isinstance(event, _DIALOGUE_EVENTS):
            return
        if key in self._open():
            self._heard[key] = time.monotonic()
        if key == self.selected:
            self._catch_up(key)

    def run_ended(self, cancelled: bool) -> None:
        """The diagnosis stopped. A main session still open was cut off: when the user
        cancelled, say so in its transcript, with what it was waiting for."""
        if cancelled:
            for key, where in self._open().items():
                waited = time.monotonic() - self._heard.get(key, time.monotonic())
                note = TranscriptLine(
                    where,
                    "main",
                    -1.0,  # no time of the session's own: the stamp stays blank
                    "!",
                    f"cancelled after {waited:.1f} s waiting for {self._waiting_for(key)}",
                )
                self._notes.setdefault(key, []).append(note)
                if key == self.selected:
                    self._append(_Entry("main", note, None), key)
        self._heard = {}
        self._render_header()

    def _waiting_for(self, key: AddrKey) -> str:
        """What the open main session of `key` waits for, as the engine said (Waiting)."""
        what = self.report.waiting_for(*key) if self.report is not None else None
        return f"the {what}" if what else "an answer"

    def _tick(self) -> None:
        if self.selected in self._heard and self.selected in self._open():
            self._render_header()

    def show_address(self, key: AddrKey | None) -> None:
        super().show_address(key)
        self._rebuild()

    def toggle_side(self) -> None:
        self.show_side = not self.show_side
        self._rebuild()

    def jump(self, main_index: int) -> bool:
        """Highlight the main transcript line with this index (Finding evidence)."""
        option = self._option_of_main.get(main_index)
        if option is None:
            return False
        self.lines.highlighted = option
        self.lines.scroll_to_highlight()
        return True

    # ------------------------------------------------------------------ rendering

    def _rebuild(self) -> None:
        lines = self.lines
        lines.clear_options()
        self._option_of_main = {}
        self._shown = 0
        self._rendered = 0
        self._render_header()
        if self.selected is not None:
            self._catch_up(self.selected, follow=False)
            for note in self._notes.get(self.selected, []):
                self._append(_Entry("main", note, None), self.selected, follow=False)
        self._render_side()

    def _catch_up(self, key: AddrKey, *, follow: bool = True) -> None:
        """Append what the report holds for `key` beyond what is shown (cheap per event)."""
        dialogue = self._dialogue(key)
        side_changed = False
        for event in dialogue[self._rendered :]:
            entry = _entry(event)
            if entry.purpose == "main" or self.show_side:
                self._append(entry, key, follow=follow)
            else:
                side_changed = True
        self._rendered = len(dialogue)
        if side_changed:
            self._render_side()

    def _append(self, entry: _Entry, key: AddrKey, *, follow: bool = True) -> None:
        prompts = self._render_entry(entry, key)
        if not prompts:
            return
        lines = self.lines
        following = lines.highlighted is None
        if entry.main_index is not None:
            self._option_of_main[entry.main_index] = self._shown
        lines.add_options(prompts)
        self._shown += len(prompts)
        if follow and following:
            lines.scroll_end(animate=False)

    def _render_entry(self, entry: _Entry, key: AddrKey) -> list[Text]:
        ev = entry.event
        tag = Text(f"[{entry.purpose}] ", "dim") if entry.purpose != "main" else Text("")
        if isinstance(ev, TranscriptLine):
            label, style = _DIR.get(ev.dir, (ev.dir, ""))
            text_style = "red" if ev.dir == "!" else ""
            return [
                join(
                    _stamp(ev.t_ms if ev.t_ms >= 0 else None),
                    tag + Text(label.ljust(3), style),
                    safe_text(ev.text, text_style),
                )
            ]
        if isinstance(ev, TlsNegotiated):
            out = [
                join(
                    _stamp(None),
                    Text("== ", "magenta"),
                    Text("TLS established:", "bold"),
                    safe_text(ev.version, "bold"),
                    safe_text(ev.cipher),
                    Text(f"({ev.bits} bits)" if ev.bits else ""),
                    safe_text(f"group {ev.group}" if ev.group else "group ?"),
                    Text(
                        "forward secrecy" if ev.forward_secrecy else "NO forward secrecy",
                        "" if ev.forward_secrecy else "yellow",
                    ),
                    safe_text(f"SNI {ev.sni}" if ev.sni else "no SNI", "dim"),
                )
            ]
            if not any(
                isinstance(e, TranscriptLine) and e.purpose == "main" and e.dir == "TLS"
                for e in self._dialogue(key)
            ):
                # The session did not log handshake steps itself: show the messages here.
                out.extend(
                    join(_stamp(None), Text("TLS", "magenta"), safe_text(step))
                    for step in ev.handshake
                )
            return out
        if isinstance(ev, SessionStarted):
            if entry.purpose == "main":
                return []
            return [join(_stamp(None), tag + Text("-- side probe starts --", "dim"))]
        if isinstance(ev, SessionFinished):
            if ev.outcome == "ok":
                what = Text("session ended normally", "dim")
            else:
                what = safe_text(f"session stopped at: {ev.outcome}", "bold red")
            return [join(_stamp(None), tag + Text("== ", "dim"), what)]
        if isinstance(ev, TlsVersionsProbed):
            return [
                join(
                    _stamp(None),
                    tag + Text("versions:", "bold"),
                    safe_text(versions_text(ev.accepted)),
                )
            ]
        return []

    def _render_header(self) -> None:
        header = self.query_one("#transcript-header", Static)
        if self.selected is None:
            header.update(Text("(choose an MX address in pane 1)", "dim"))
            return
        host, address = self.selected
        out = join(safe_text(host, "bold"), safe_text(f"[{address}]"))
        heard = self._heard.get(self.selected)
        if heard is not None and self.selected in self._open():
            waited = time.monotonic() - heard
            if waited >= _WAIT_SHOWN_AFTER:
                out.append("  ")
                out.append_text(
                    safe_text(
                        f"waiting {waited:.0f} s for {self._waiting_for(self.selected)}", "yellow"
                    )
                )
        header.update(out)

    def _render_side(self) -> None:
        side = self.query_one("#transcript-side", Static)
        if self.selected is None:
            side.update(Text(""))
            return
        counts: dict[str, int] = defaultdict(int)
        for event in self._dialogue(self.selected):
            if isinstance(event, TranscriptLine) and event.purpose != "main":
                counts[event.purpose] += 1
        if not counts:
            side.update(Text("no side probes for this address (yet)", "dim"))
            return
        summary = ", ".join(f"{p} ({n} lines)" for p, n in counts.items())
        verb = "hide" if self.show_side else "show"
        side.update(Text(f"side probes: {summary}; press t to {verb}", "dim"))
