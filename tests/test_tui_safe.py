"""tui/safe.py: the safe-text door and the status marks (pure)."""

from __future__ import annotations

from rich.text import Text

from tui.safe import mark, mark_word, safe_text


def test_safe_text_is_inert() -> None:
    hostile = "220 [bold]x\x1b[31m red \x1b]0;pwned\x07 \u202eevil"
    text = safe_text(hostile)
    assert isinstance(text, Text)
    assert "[bold]" in text.plain  # markup stays literal
    assert "\x1b" not in text.plain and "\x07" not in text.plain
    assert "␛[31m" in text.plain and "␇" in text.plain
    assert "<U+202E>" in text.plain
    assert text.spans == []  # no style was parsed out of the string


def test_marks_are_words() -> None:
    assert [mark_word(s) for s in ("error", "warning", "info", "ok", "running")] == [
        "FAIL",
        "WARN",
        "INFO",
        "OK",
        "...",
    ]
    assert mark("error").plain.strip() == "FAIL"
    assert len(mark("ok").plain) == len(mark("error").plain)  # columns line up
