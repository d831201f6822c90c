"""The dialogs and full screens of the UI (help, prompts, walk-through, connector form), one module each."""

from __future__ import annotations

from textual.containers import ScrollableContainer


def page(scroll: ScrollableContainer, direction: int) -> None:
    """PgDn (direction > 0) or PgUp in a scrolling box, without animation (slow links)."""
    if direction > 0:
        scroll.scroll_page_down(animate=False)
    else:
        scroll.scroll_page_up(animate=False)
