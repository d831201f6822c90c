"""Counted nouns in report text: "1 day", "2 days", never "1 days" or "record(s)"."""

from __future__ import annotations


def count(n: int, singular: str, plural: str | None = None) -> str:
    """`n` and the noun in the number it needs: count(1, "entry", "entries") == "1 entry"."""
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"
