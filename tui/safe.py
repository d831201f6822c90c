"""The one door through which network text reaches the screen, and the status marks.

Everything that came from the network (banners, EHLO lines, certificate fields, URLs, HTTP
bodies, error strings that quote them) becomes a `rich.text.Text` through `safe_text()`:
control characters are made visible first (`probes.model.safetext.visible`), and a `Text` is never
parsed as markup, so "[bold]" stays literal and ESC cannot reach the terminal. Textual parses
plain strings given to Tree labels, DataTable cells and OptionList prompts as markup, which is
why widgets must only ever be handed the `Text` this module returns.

Status marks are words as well as colours, so they survive 16-colour themes and NO_COLOR.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from probes.model.safetext import visible

# Colours are the 8 ANSI names, so 16-colour terminals show the user's own palette.
_MARKS: dict[str, tuple[str, str]] = {
    "error": ("FAIL", "bold red"),
    "warning": ("WARN", "bold yellow"),
    "info": ("INFO", "cyan"),
    "ok": ("OK", "bold green"),
    "running": ("...", "bold"),
    "pending": ("--", "dim"),
    "cancelled": ("STOP", "magenta"),
}
MARK_WIDTH = 4


def safe_text(s: str | None, style: str = "") -> Text:
    """Network (or any untrusted) text as inert rich Text: controls visible, no markup."""
    return Text(visible(s or ""), style=style, no_wrap=False)


def mark(status: str | None) -> Text:
    """A fixed-width status word with colour: FAIL, WARN, INFO, OK, ..., --."""
    word, style = _MARKS.get(status or "pending", _MARKS["pending"])
    return Text(word.ljust(MARK_WIDTH), style=style)


def mark_word(status: str | None) -> str:
    """The bare word of a status mark (for tests, clipboard and plain exports)."""
    return _MARKS.get(status or "pending", _MARKS["pending"])[0]


def join(*parts: Text | str, sep: str = " ") -> Text:
    """Join Text parts; plain str parts are our own constant labels, never network text."""
    out = Text()
    first = True
    for part in parts:
        if not first:
            out.append(sep)
        first = False
        out.append(part if isinstance(part, Text) else Text(part))
    return out


def hanging(rows: list[tuple[Text, Text]], width: int, console: Console | None = None) -> Text:
    """Each (label, body) row with the body wrapped under itself, not under the label.

    Still one `Text` (never markup), so what it shows is exactly its plain text. `width` is
    the columns available; the caller re-renders when that changes.
    """
    console = console or Console(width=max(width, 20))
    out = Text()
    for label, body in rows:
        indent = Text(" " * label.cell_len)
        lines = body.wrap(console, max(10, width - label.cell_len)) if body.plain else [body]
        for number, line in enumerate(lines):
            out.append_text(label if number == 0 else indent)
            out.append_text(line)
            out.append("\n")
    out.rstrip()
    return out
