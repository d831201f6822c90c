"""Pane 4: every OCSP, CRL and caIssuers URL of the chosen address's chain, as a table that
fills in as the fetches finish: result, kind, detail (OCSP status, CRL freshness, the error),
host, HTTP status, latency. The rows are the report's answer (`Report.endpoints_for`); the
firewall list ("f") is the report's too and covers every MX, not just this one.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import DataTable, Static

from probes.model.events import (
    ChainValidated,
    DiagnosisFinished,
    EndpointChecked,
    Event,
    SessionFinished,
)

from ..safe import join, mark, safe_text
from . import AddrKey, Pane

_KIND = {"ocsp": "OCSP", "crl": "CRL", "ca_issuers": "caIssuers"}
# Detail comes before Host: at 80 columns the table scrolls sideways, and what the result
# means matters more than where it came from (the line under the table shows the whole row).
COLUMNS = ("Result", "Kind", "Detail", "Host", "HTTP", "ms", "URL")


class EndpointsPane(Pane):
    number = 4
    pane_title = "Endpoints"

    def compose(self) -> ComposeResult:
        yield Static(Text("(no CA endpoints checked yet)", "dim"), id="endpoints-note")
        table: DataTable[Text] = DataTable(
            id="endpoints-table", cursor_type="row", zebra_stripes=False
        )
        yield table
        # The table is wider than an 80-column pane: the highlighted row in full, wrapped.
        yield Static(Text(""), id="endpoints-detail")

    def on_mount(self) -> None:
        self.table.add_columns(*COLUMNS)
        self.reset()

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#endpoints-table", DataTable)

    def focus_target(self) -> Widget:
        return self.table

    def reset(self) -> None:
        super().reset()
        self.everything = False  # every MX's endpoints, not the chosen address's
        self.table.clear()
        self._note()
        self._detail()

    def add_event(self, event: Event) -> None:
        if isinstance(event, EndpointChecked):
            if event in self.shown():
                self._put_row(event)
                self._note()
                self._detail()
        elif isinstance(event, (ChainValidated, SessionFinished, DiagnosisFinished)):
            self._note()  # what the note says about an empty table may have changed

    def show_address(self, key: AddrKey | None, everything: bool = False) -> None:
        super().show_address(key)
        self.everything = everything
        self._rebuild()

    def jump(self, url: str) -> bool:
        try:
            row = self.table.get_row_index(url)
        except Exception:  # RowDoesNotExist: the URL belongs to another address's chain
            return False
        self.table.move_cursor(row=row)
        self._detail()
        return True

    def highlighted(self) -> EndpointChecked | None:
        """The endpoint under the table's cursor, if any."""
        table = self.table
        if table.row_count == 0:
            return None
        try:
            url = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:  # no cursor row yet
            return None
        return next((e for e in self.shown() if e.url == url), None)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._detail()

    def shown(self) -> list[EndpointChecked]:
        """The rows: one per URL, its latest result."""
        report = self.report
        if report is None:
            return []
        if self.selected is None or self.everything:
            return report.all_endpoints()
        return report.endpoints_for(*self.selected)

    # ------------------------------------------------------------------ rendering

    def _rebuild(self) -> None:
        self.table.clear()
        for e in self.shown():
            self._put_row(e)
        self._note()
        self._detail()

    def _cells(self, e: EndpointChecked) -> list[Text]:
        if e.cert_status == "revoked":
            result = join(mark("error"), Text("revoked", "bold red"))
        elif e.ok:
            result = mark("ok")
        else:
            result = mark("error")
        detail_parts: list[Text | str] = []
        if e.error:
            detail_parts.append(safe_text(e.error, "red"))
        if e.detail:
            detail_parts.append(safe_text(e.detail))
        if (
            e.cert_status
            and e.cert_status != "revoked"
            and (not e.detail or e.cert_status not in e.detail)
        ):
            detail_parts.append(safe_text(f"status {e.cert_status}"))
        return [
            result,
            Text(_KIND.get(e.kind, e.kind)),
            join(*detail_parts) if detail_parts else Text("-"),
            safe_text(e.host),
            Text(str(e.status) if e.status is not None else "-"),
            Text(f"{e.ms:.0f}" if e.ms is not None else "-"),
            safe_text(e.url, "dim"),
        ]

    def _put_row(self, e: EndpointChecked) -> None:
        table = self.table
        cells = self._cells(e)
        if e.url in table.rows:
            for column, cell in zip(table.ordered_columns, cells, strict=False):
                table.update_cell(e.url, column.key, cell)
        else:
            table.add_row(*cells, key=e.url)

    def _note(self) -> None:
        note = self.query_one("#endpoints-note", Static)
        shown = self.shown()
        if not shown:
            note.update(Text(self._why_empty(), "dim"))
            return
        bad = sum(1 for e in shown if not e.ok)
        scope = "this address's chain" if self.selected and not self.everything else "all MX"
        parts = [Text(f"{len(shown)} URL{'s' if len(shown) != 1 else ''} for {scope}")]
        if bad:
            parts.append(Text(f"{bad} failing", "bold red"))
        parts.append(Text("f = copy firewall list", "dim"))
        note.update(join(*parts, sep=", "))

    def _why_empty(self) -> str:
        """Why there is no row, in words: not yet, never (no chain, nothing to check), or off."""
        report = self.report
        session = report.session_at(*self.selected) if report and self.selected else None
        if report is None or session is None:
            return "(no CA endpoints checked yet)"
        if not report.options.endpoints:
            return "(CA endpoint checks are off: --no-endpoints)"
        if session.outcome is not None and session.chain is None:
            return (
                f"(no CA endpoints: the session stopped at {session.outcome}, before a certificate)"
            )
        if session.validation is not None and report.finished is not None:
            return "(the chain names no OCSP, CRL or caIssuers URL)"
        return "(no CA endpoints checked yet)"

    def _detail(self) -> None:
        detail = self.query_one("#endpoints-detail", Static)
        e = self.highlighted()
        if e is None:
            detail.update(Text(""))
            return
        cells = self._cells(e)
        out = join(cells[0], Text(_KIND.get(e.kind, e.kind), "bold"), safe_text(e.url))
        out.append("\n")
        out.append(
            join(
                Text(f"HTTP {e.status}" if e.status is not None else "no HTTP answer", "dim"),
                Text(f"{e.ms:.0f} ms" if e.ms is not None else "", "dim"),
                cells[COLUMNS.index("Detail")],
            )
        )
        detail.update(out)
