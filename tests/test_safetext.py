"""probes/model/safetext.py: network text made visible-safe, and bytes decoded."""

from __future__ import annotations

import pytest

from probes.model.safetext import decode, visible


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[2J", "\u241b[2J"),  # ESC -> the control picture
        ("a\x00b", "a\u2400b"),
        ("del\x7f", "del\u2421"),
        ("csi\x9b", "csi\\x9b"),  # C1 as an escape, never raw
        ("evil\u202etxt", "evil<U+202E>txt"),  # bidi override
        ("zero\u200bwidth", "zero<U+200B>width"),
    ],
)
def test_controls_and_reordering_characters_become_visible(raw: str, shown: str) -> None:
    assert visible(raw) == shown


def test_printable_text_is_untouched() -> None:
    text = "220 mx.bücher.example ESMTP 😀 [192.0.2.1]"
    assert visible(text) == text


def test_tab_is_kept_only_when_asked() -> None:
    assert visible("a\tb") == "a\u2409b"
    assert visible("a\tb", keep_tab=True) == "a\tb"


def test_decode_replaces_invalid_utf8() -> None:
    assert decode(b"ok \xff end") == "ok \ufffd end"
