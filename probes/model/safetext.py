"""The one function that makes network text safe to show.

Everything that came from the network (banners, EHLO lines, certificate fields, URLs, HTTP
bodies) passes through `visible()` before a front end shows it. It replaces control characters
with visible stand-ins so that a hostile server cannot move the cursor, change the terminal's
title (OSC), or hide text; the result must still be rendered as plain text, never as markup.
"""

from __future__ import annotations

import re
import unicodedata

# Letters that render as blank space: the Hangul fillers are category Lo, not Cf, but they
# hide text just as well.
_BLANK_LETTERS = frozenset({0x115F, 0x1160, 0x3164, 0xFFA0})
# Unicode categories that control, reorder or hide text: Cc (C0, DEL, C1), Cf (format:
# soft hyphen, bidi marks, embeddings, overrides and isolates, zero-width characters, word
# joiner and invisible operators, tag characters, BOM), Zl and Zp (line and paragraph
# separators).
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def is_hidden(ch: str) -> bool:
    """True for a character that a terminal acts on, or that reorders or hides text."""
    code = ord(ch)
    if 0x20 <= code < 0x7F:
        return False  # printable ASCII: the common case, decided without a table
    return unicodedata.category(ch) in _HIDDEN_CATEGORIES or code in _BLANK_LETTERS


def _stand_in(code: int) -> str:
    if code < 0x20:
        return chr(0x2400 + code)  # the Unicode "control pictures": ␛ for ESC, ␀ for NUL
    if code == 0x7F:
        return "\u2421"  # ␡
    if 0x80 <= code <= 0x9F:
        return f"\\x{code:02x}"
    return f"<U+{code:04X}>"


def visible(text: str, *, keep_tab: bool = False) -> str:
    """Return text with every control character (C0, DEL, C1), every format character (bidi
    controls, zero-width and invisible characters, tags, soft hyphen), the line and paragraph
    separators and the blank Hangul fillers replaced by a visible stand-in. Printable text is
    untouched."""
    out: list[str] = []
    for ch in text:
        if is_hidden(ch) and not (keep_tab and ch == "\t"):
            out.append(_stand_in(ord(ch)))
        else:
            out.append(ch)
    return "".join(out)


# json.dumps already escapes C0 inside strings; a raw one in its output is the layout's own
# newline or indent. Only DEL and beyond need looking at.
_NOT_ASCII = re.compile(r"[^\x00-\x7e]")


def json_escape_hidden(text: str) -> str:
    """Serialized JSON with every hidden character (see is_hidden) written as \\uXXXX, so a
    user who `cat`s the file gets no C1 control or bidi override acted on. Valid JSON stays
    valid: such characters only occur inside strings, where the escape means the same."""

    def escape(match: re.Match[str]) -> str:
        ch = match.group(0)
        if not is_hidden(ch):
            return ch
        code = ord(ch)
        if code > 0xFFFF:  # a UTF-16 surrogate pair, as JSON spells it
            code -= 0x10000
            return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
        return f"\\u{code:04x}"

    return _NOT_ASCII.sub(escape, text)


def decode(data: bytes) -> str:
    """Decode network bytes as UTF-8, with replacement characters where they are invalid."""
    return data.decode("utf-8", errors="replace")
