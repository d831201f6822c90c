"""The audit screen (`mxlens audit FILE` on a terminal): one row per domain, filling in live.

The audit runs in a worker on the app's loop, through the same runner and history journal as
the headless command, so a row shows exactly what `audit --json` would say. Enter on a row
opens that domain's diagnosis in the panes (probed again, live, with the row's options);
Shift+A there comes back to this table. q leaves: the audit stops where it is, and
`mxlens audit --resume ID` continues it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Static

from probes.audit.inputs import Item
from probes.audit.rows import item_options
from probes.model.errors import CheckError
from probes.model.options import Options
from probes.model.safetext import visible

from ..safe import mark, safe_text

_COLUMNS = (
    ("status", "Status"),
    ("domain", "Domain"),
    ("worst", "Worst finding"),
    ("first_failure", "Stops at"),
    ("tls_version", "TLS"),
    ("leaf_days_left", "Leaf days"),
)
_STATUS = {0: "ok", 1: "warning", 2: "error", 3: "cancelled"}
KEYS_HINT = "Up/Down domain  Enter open its diagnosis  q leave (resume later)"


class AuditScreen(Screen[None]):
    BINDINGS = [
        Binding("q", "leave", "Leave", priority=True),
        Binding("ctrl+c", "leave", "Leave", show=False, priority=True),
    ]
    DEFAULT_CSS = """
    AuditScreen #audit-head { height: 1; }
    AuditScreen #audit-keys { height: 1; dock: bottom; }
    AuditScreen DataTable { height: 1fr; }
    """

    def __init__(self, journal: Any, settings: Any) -> None:
        super().__init__()
        self.journal = journal
        self.settings = settings
        self.items: list[Item] = list(journal.items)
        self.done = len(journal.rows)
        self.failed: str | None = None
        self.finished = self.done == len(self.items)
        self.options_for: Any = None
        self._release = asyncio.Event()
        self.stats: dict[str, int] = {}

    def compose(self) -> ComposeResult:
        yield Static(id="audit-head")
        yield DataTable(id="audit-table", cursor_type="row", zebra_stripes=False)
        yield Static(Text(KEYS_HINT, "dim"), id="audit-keys")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label in _COLUMNS:
            table.add_column(label, key=key)
        for item in self.items:
            row = self.journal.rows.get(item.seq)
            table.add_row(*self._cells(item, row), key=str(item.seq))
        self._head()
        table.focus()
        # On the app, not the screen: the audit goes on while the panes show one domain.
        self.app.run_worker(self._run(), group="audit", exit_on_error=False)

    # ------------------------------------------------------------------ rows

    def _cells(self, item: Item, row: dict[str, Any] | None) -> list[Text]:
        if row is None:
            return [mark("pending"), safe_text(item.domain), *[Text("") for _ in range(4)]]
        return [
            mark(_STATUS.get(int(row["exit"]), "pending")),
            safe_text(item.domain),
            safe_text(row.get("worst") or ("-" if row["exit"] != 3 else str(row.get("detail")))),
            safe_text(row.get("first_failure") or "-"),
            safe_text(row.get("tls_version") or "-"),
            safe_text("-" if row.get("leaf_days_left") is None else str(row["leaf_days_left"])),
        ]

    def _head(self) -> None:
        total = len(self.items)
        state = (
            f"failed: {self.failed}"
            if self.failed
            else ("done" if self.finished else f"{self.done}/{total} checked")
        )
        bad = sum(1 for row in self.journal.rows.values() if row.get("exit") != 0)
        self.query_one("#audit-head", Static).update(
            safe_text(f"mxlens audit {self.journal.audit_id}  {state}  {bad} not OK")
        )

    def show(self, done: Any) -> None:
        """A finished domain (called on the app's loop, after it was recorded)."""
        self.done += 1
        table = self.query_one(DataTable)
        key = str(done.item.seq)
        for (column, _), cell in zip(_COLUMNS, self._cells(done.item, done.row), strict=True):
            table.update_cell(key, column, cell)
        self.finished = len(self.journal.rows) == len(self.items)
        self._head()

    async def _run(self) -> None:
        from tui.commands.audit import run_items

        def ready(options_for: Any) -> None:
            self.options_for = options_for

        try:
            self.stats = await run_items(
                self.journal, self.settings, self.show, on_ready=ready, hold=self._release
            )
        except CheckError as exc:
            self.failed = str(exc)
        except Exception as exc:  # shown, never a traceback over the table
            self.failed = f"internal error: {type(exc).__name__}: {exc}"
        self._head()

    # ------------------------------------------------------------------ keys

    def _options(self, item: Item) -> Options:
        options = item_options(self.settings.options, item, self.settings.connector)
        if self.settings.lab:
            if self.options_for is None:
                raise CheckError("the lab is not running yet")
            options = self.options_for(item, options)
        return options

    @on(DataTable.RowSelected)
    def _open(self, event: DataTable.RowSelected) -> None:
        seq = int(str(event.row_key.value))
        item = next(i for i in self.items if i.seq == seq)
        if item.error:
            self.app.notify(visible(item.error), severity="warning", markup=False)
            return
        try:
            options = self._options(item)
        except CheckError as exc:
            self.app.notify(visible(str(exc)), severity="warning", markup=False)
            return
        opener = getattr(self.app, "open_from_audit", None)
        if opener is not None:
            opener(item.domain, options)

    def action_leave(self) -> None:
        self._release.set()
        self.app.exit(0)


def run_audit_app(journal: Any, settings: Any) -> dict[str, int]:
    """Open the UI on the audit screen; returns the connection counters when it ends."""
    from tui.app import MxLensApp

    screen = AuditScreen(journal, settings)
    app = MxLensApp(None, settings.options, audit_screen=screen)
    app.run()
    return screen.stats
