"""The history screen ("h"): two recorded checks of the domain side by side, and what changed.

The right column is the newest run (normally the check just made), the left one the run
before it. Left/Right (or [ and ]) step the left column through older runs; Shift+Left/Right
step the right one. Below the columns, the changes between the two as `mxlens diff` lists
them. q (or h, ctrl+g, Esc) closes. Everything shown comes from the history database; network
text goes through safe_text().
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from probes.history.diff import diff_runs, short_time
from probes.history.store import HistoryStore, Run, RunSummary
from probes.model.errors import CheckError
from probes.report import VERDICT_TEXT

from ..safe import join, mark, safe_text
from . import page

KEYS_HINT = "Left/Right older run  Shift+Left/Right newer run  PgUp/PgDn scroll  q close"
MAX_RUNS = 200


def run_column(run: Run) -> Text:
    """One run as a column: when, verdict, MX and addresses, per address TLS and the leaf,
    the policies, and the findings."""
    out = Text()
    out.append(f"run {run.id}  {short_time(run.started)}  ({run.source})\n", "bold")
    out.append_text(
        join(mark(_status(run.exit)), Text(VERDICT_TEXT.get(run.exit, f"exit {run.exit}")))
    )
    out.append("\n\n")
    doc = run.report
    for mx in doc.get("mx") or []:
        out.append_text(safe_text(f"MX {mx.get('preference', '?')} {mx.get('host')}", "bold"))
        out.append("\n")
        for s in mx.get("sessions") or []:
            tls = (s.get("tls") or {}).get("version") or "no TLS"
            out.append_text(safe_text(f"  {s.get('address')}:{s.get('port')}  {tls}"))
            out.append("\n")
            chain = s.get("chain") or []
            if chain:
                leaf = chain[0]
                out.append_text(safe_text(f"    leaf {leaf.get('subject')}", "dim"))
                out.append("\n")
                out.append_text(safe_text(f"    issuer {leaf.get('issuer')}", "dim"))
                out.append("\n")
                out.append_text(
                    safe_text(
                        f"    until {leaf.get('not_after')}  sha256 {str(leaf.get('sha256'))[:16]}...",
                        "dim",
                    )
                )
                out.append("\n")
        if not mx.get("sessions"):
            addresses = ", ".join(mx.get("addresses") or []) or "no addresses"
            out.append_text(safe_text(f"  {addresses}", "dim"))
            out.append("\n")
    policies = doc.get("policies") or {}
    sts = policies.get("mta_sts") or {}
    rpt = policies.get("tls_rpt") or {}
    sts_text = (sts.get("mode") or "invalid") if sts.get("record") else "none"
    out.append_text(
        safe_text(f"MTA-STS {sts_text}   TLS-RPT {'yes' if rpt.get('record') else 'none'}")
    )
    out.append("\n\n")
    findings = [f for f in doc.get("findings") or [] if f.get("severity") != "ok"]
    out.append("Findings\n" if findings else "No findings\n", "bold")
    for f in findings:
        out.append_text(join(mark(str(f.get("severity"))), safe_text(str(f.get("id")))))
        out.append("\n")
    return out


def _status(exit_code: int) -> str:
    return {0: "ok", 1: "warning", 2: "error"}.get(exit_code, "info")


class HistoryScreen(ModalScreen[None]):
    """Two runs of one domain side by side, with the changes between them."""

    DEFAULT_CSS = """
    HistoryScreen { align: center middle; }
    HistoryScreen > #history-box { width: 100%; max-width: 160; height: 100%; max-height: 50;
        border: round $accent; background: $surface; padding: 0 1; }
    HistoryScreen #history-scroll { height: 1fr; scrollbar-gutter: stable; }
    HistoryScreen #history-columns { height: auto; }
    HistoryScreen .history-run { width: 1fr; height: auto; padding-right: 1; }
    HistoryScreen #history-changes { height: auto; margin-top: 1; }
    HistoryScreen #history-keys { height: 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("escape,q,h,ctrl+g", "close", "Close"),
        Binding("left,left_square_bracket", "step('a', 1)", "Older", show=False),
        Binding("right,right_square_bracket", "step('a', -1)", "Newer", show=False),
        Binding("shift+left", "step('b', 1)", "Older", show=False),
        Binding("shift+right", "step('b', -1)", "Newer", show=False),
        Binding("pagedown,space", "scroll(1)", "Scroll", show=False),
        Binding("pageup", "scroll(-1)", "Scroll", show=False),
    ]

    def __init__(self, domain: str, store: Any = None) -> None:
        super().__init__()
        self.domain = domain.rstrip(".").lower()
        self._store_factory = store or HistoryStore
        self.runs: list[RunSummary] = []  # newest first
        self.a = 1  # index into runs of the left (older) column
        self.b = 0  # ... and of the right (newer) one
        self.error: str | None = None
        self._cache: dict[int, Run] = {}

    def compose(self) -> ComposeResult:
        with Vertical(id="history-box"):
            yield Static(id="history-head")
            with VerticalScroll(id="history-scroll"):
                with Horizontal(id="history-columns"):
                    yield Static(id="history-a", classes="history-run")
                    yield Static(id="history-b", classes="history-run")
                yield Static(id="history-changes")
            yield Static(Text(KEYS_HINT), id="history-keys")

    def on_mount(self) -> None:
        try:
            with self._store_factory() as store:
                self.runs = store.runs(self.domain, MAX_RUNS)
                for summary in self.runs[:2]:
                    self._cache[summary.id] = store.run(summary.id)
        except CheckError as exc:
            self.error = str(exc)
        self._show()

    def _run(self, index: int) -> Run:
        summary = self.runs[index]
        if summary.id not in self._cache:
            with self._store_factory() as store:
                self._cache[summary.id] = store.run(summary.id)
        return self._cache[summary.id]

    def _show(self) -> None:
        head = self.query_one("#history-head", Static)
        col_a = self.query_one("#history-a", Static)
        col_b = self.query_one("#history-b", Static)
        changes = self.query_one("#history-changes", Static)
        if self.error is not None:
            head.update(join(Text("History:", "bold"), safe_text(self.error, "red")))
            return
        if len(self.runs) < 2:
            what = "one check" if self.runs else "no check"
            head.update(
                join(
                    Text("History:", "bold"),
                    safe_text(f"{what} of {self.domain} recorded; two are needed to compare."),
                )
            )
            if self.runs:
                col_b.update(run_column(self._run(0)))
            return
        try:
            a, b = self._run(self.a), self._run(self.b)
        except CheckError as exc:
            head.update(join(Text("History:", "bold"), safe_text(str(exc), "red")))
            return
        diff = diff_runs(a, b)
        head.update(
            join(
                Text("History of", "bold"),
                safe_text(self.domain, "bold"),
                Text(
                    f"run {a.id} ({self.a + 1} back) vs run {b.id}; {len(self.runs)} recorded",
                    "dim",
                ),
            )
        )
        col_a.update(run_column(a))
        col_b.update(run_column(b))
        out = Text()
        if not diff.changes:
            out.append("No change between these two runs.", "dim")
        else:
            out.append(f"{len(diff.changes)} change(s) from run {a.id} to run {b.id}:\n", "bold")
            for c in diff.changes:
                out.append_text(safe_text(f"  {c.where}: "))
                out.append(c.text())
                out.append("\n")
        changes.update(out)

    def action_step(self, column: str, delta: int) -> None:
        if len(self.runs) < 2:
            return
        if column == "a":
            self.a = min(max(self.a + delta, self.b + 1), len(self.runs) - 1)
        else:
            self.b = min(max(self.b + delta, 0), self.a - 1)
        self._show()

    def action_scroll(self, direction: int) -> None:
        page(self.query_one("#history-scroll", VerticalScroll), direction)

    def action_close(self) -> None:
        self.dismiss(None)
