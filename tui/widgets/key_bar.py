"""The key bar at the bottom: every action's key and name, as currently mapped.

Textual's Footer scrolls sideways when its keys do not fit, so at 80 columns half of them
would be out of sight. This bar wraps whole "key Name" items onto a second line instead, and
greys out the actions that cannot run now (Cancel when nothing runs).
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.widgets import Static

from ..keymap import ACTIONS, display_key, keys_for

SEPARATOR = "  "


def short_key(key: str) -> str:
    """Key names as terminal users write them, short: ctrl+c -> ^c, Shift+Tab -> S-Tab."""
    if key.startswith("ctrl+") and len(key) == 6:
        return "^" + key[5:]
    return {"Shift+Tab": "S-Tab"}.get(key, key)


def key_items(keymap: dict[str, str]) -> list[tuple[str, str, str]]:
    """(key as shown, label, action) for the bar: the pane keys folded into one item, Tab and
    Shift+Tab into another, then every other action shown in the footer, and the palette."""
    items: list[tuple[str, str, str]] = []
    pane_keys = [display_key(keys_for(f"pane_{n}", keymap)) for n in range(1, 6)]
    for a in ACTIONS:
        if a.id == "pane_1":
            shown = "1-5" if pane_keys == ["1", "2", "3", "4", "5"] else "/".join(pane_keys)
            items.append((shown, "Pane", "pane(1)"))
        elif a.id.startswith("pane_"):
            continue
        elif a.id == "next_pane":
            nxt = display_key(keys_for("next_pane", keymap))
            prv = display_key(keys_for("prev_pane", keymap))
            items.append((f"{short_key(nxt)}/{short_key(prv)}", "Next/prev", a.action))
        elif a.id == "prev_pane":
            continue
        elif a.show:
            items.append((short_key(display_key(keys_for(a.id, keymap))), a.label, a.action))
    items.append(("^p", "Palette", "command_palette"))
    return items


def layout(items: list[Text], width: int) -> Text:
    """Whole items packed into as few lines of `width` cells as they need."""
    out = Text(no_wrap=True, overflow="ellipsis")
    line = 0
    for item in items:
        needed = item.cell_len if line == 0 else len(SEPARATOR) + item.cell_len
        if line and line + needed > width:
            out.append("\n")
            line = 0
            needed = item.cell_len
        elif line:
            out.append(SEPARATOR)
        out.append_text(item)
        line += needed
    return out


class KeyBar(Static):
    """Docked at the bottom; `update_keys` redraws it (after a keymap, state or size change)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(Text(""), id=id, markup=False)
        self._keymap: dict[str, str] = {}
        self._enabled: Callable[[str], bool] = lambda action: True

    def update_keys(self, keymap: dict[str, str], enabled: Callable[[str], bool]) -> None:
        self._keymap = keymap
        self._enabled = enabled
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        width = self.size.width or self.app.size.width
        items = []
        for key, label, action in key_items(self._keymap):
            on = self._enabled(action)
            items.append(
                Text.assemble(
                    (key, "bold reverse" if on else "dim"), " ", (label, "" if on else "dim")
                )
            )
        self.update(layout(items, max(width, 20)))
