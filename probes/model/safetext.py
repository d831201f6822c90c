"""The one function that makes network text safe to show.

Everything that came from the network (banners, EHLO lines, certificate fields, URLs, HTTP
bodies) passes through `visible()` before a front end shows it. It replaces control characters
with visible stand-ins so that a hostile server cannot move the cursor, change the terminal's
title (OSC), or hide text; the result must still be rendered as plain text, never as markup.
"""

from __future__ import annotations

# Characters that reorder or hide text without being control characters in the C0/C1 sense.
_INVISIBLE = {
    0x200B,
    0x200C,
    0x200D,
    0x200E,
    0x200F,  # zero-width and direction marks
    0x202A,
    0x202B,
    0x202C,
    0x202D,
    0x202E,  # bidi embeddings and overrides
    0x2066,
    0x2067,
    0x2068,
    0x2069,  # bidi isolates
    0xFEFF,  # zero-width no-break space / BOM
}


def _stand_in(code: int) -> str:
    if code < 0x20:
        return chr(0x2400 + code)  # the Unicode "control pictures": ␛ for ESC, ␀ for NUL
    if code == 0x7F:
        return "\u2421"  # ␡
    if 0x80 <= code <= 0x9F:
        return f"\\x{code:02x}"
    return f"<U+{code:04X}>"


def visible(text: str, *, keep_tab: bool = False) -> str:
    """Return text with every control character (C0, DEL, C1) and every invisible
    reordering character replaced by a visible stand-in. Printable text is untouched."""
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if code < 0x20 or code == 0x7F or 0x80 <= code <= 0x9F or code in _INVISIBLE:
            if keep_tab and ch == "\t":
                out.append(ch)
            else:
                out.append(_stand_in(code))
        else:
            out.append(ch)
    return "".join(out)


def decode(data: bytes) -> str:
    """Decode network bytes as UTF-8, with replacement characters where they are invalid."""
    return data.decode("utf-8", errors="replace")
