"""Pane 4: every OCSP, CRL and caIssuers URL of the chosen address's chain, as a table that
fills in as the fetches finish: kind, host, result, HTTP status, latency, OCSP status or CRL
freshness. The firewall list ("f") covers the endpoints of every MX, not just this one.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from rich.text import Text
from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import DataTable, Static

from probes.model.events import EndpointChecked, Event

from ..safe import join, mark, safe_text
from . import AddrKey, Pane

_KIND = {"ocsp": "OCSP", "crl": "CRL", "ca_issuers": "caIssuers"}
COLUMNS = ("Result", "Kind", "Host", "HTTP", "ms", "Detail", "URL")


def host_port(url: str, host: str | None = None) -> str:
    """ "host:port" a firewall must allow for url (80 for http, 443 for https by default)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return host or url
    name = parts.hostname or host or ""
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    if ":" in name:  # an IPv6 literal
        name = f"[{name}]"
    return f"{name}:{port}"


def firewall_lines(endpoints: list[EndpointChecked]) -> list[str]:
    """Unique host:port entries, sorted, for a firewall's outbound allow list."""
    return sorted({host_port(e.url, e.host) for e in endpoints})


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
        self.endpoints: list[EndpointChecked] = []
        self.filter: set[str] = set()  # sha256 of the chosen address's certificates
        self.table.clear()
        self._note()
        self._detail()

    def add_event(self, event: Event) -> None:
        if not isinstance(event, EndpointChecked):
            return
        self.endpoints.append(event)
        if self._wanted(event):
            self._put_row(event)
            self._note()
            self._detail()

    def show_address(self, key: AddrKey | None, fingerprints: set[str] | None = None) -> None:
        super().show_address(key)
        self.filter = fingerprints or set()
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
        matches = [e for e in self.endpoints if e.url == url and self._wanted(e)]
        return matches[-1] if matches else None  # the latest result for that URL

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._detail()

    def shown(self) -> list[EndpointChecked]:
        return [e for e in self.endpoints if self._wanted(e)]

    # ------------------------------------------------------------------ rendering

    def _wanted(self, e: EndpointChecked) -> bool:
        return not self.filter or e.for_cert in self.filter

    def _rebuild(self) -> None:
        self.table.clear()
        for e in self.endpoints:
            if self._wanted(e):
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
            safe_text(e.host),
            Text(str(e.status) if e.status is not None else "-"),
            Text(f"{e.ms:.0f}" if e.ms is not None else "-"),
            join(*detail_parts) if detail_parts else Text("-"),
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
        if not self.endpoints:
            note.update(Text("(no CA endpoints checked yet)", "dim"))
            return
        bad = sum(1 for e in shown if not e.ok)
        scope = "this address's chain" if self.filter else "all MX"
        parts = [Text(f"{len(shown)} URLs for {scope}")]
        if bad:
            parts.append(Text(f"{bad} failing", "bold red"))
        parts.append(Text("f = copy firewall list", "dim"))
        note.update(join(*parts, sep=", "))

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
                cells[5],
            )
        )
        detail.update(out)
