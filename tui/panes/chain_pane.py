"""Pane 3: the certificate chain of the chosen address, leaf -> intermediates -> root, each
marked with where it came from ("sent" by the server, fetched through "aia", or taken from the
trust "store"), and a detail view of the highlighted certificate with every failed check.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Static, Tree
from textual.widgets.tree import TreeNode

from probes.history.diff import RunDiff, short_time
from probes.model.events import (
    CertInfo,
    ChainLink,
    ChainReceived,
    ChainValidated,
    DiagnosisFinished,
    Event,
    Finding,
    FindingRaised,
)
from probes.model.wording import count
from probes.report import expiry, trust_summary

from .. import change_marks
from ..safe import MARK_WIDTH, hanging, join, mark, safe_text
from . import AddrKey, Pane, key_of

_SOURCE = {
    "sent": "sent by the server",
    "aia": "fetched from the AIA caIssuers URL (the server did not send it)",
    "store": "taken from the trust store",
}


class ChainTree(Tree[int]):
    """Node data is the index of the certificate in the path (0 = leaf)."""


class ChainPane(Pane):
    number = 3
    pane_title = "Chain"

    def compose(self) -> ComposeResult:
        with Vertical(id="chain-body"):
            tree = ChainTree(Text("(no chain yet)"), id="chain-tree")
            tree.show_root = True
            tree.guide_depth = 2
            yield tree
            with VerticalScroll(id="chain-detail-scroll"):
                yield Static(Text(""), id="chain-detail")

    def on_mount(self) -> None:
        self.reset()

    @property
    def chain_tree(self) -> ChainTree:
        return self.query_one(ChainTree)

    def focus_target(self) -> Widget:
        return self.chain_tree

    def reset(self) -> None:
        super().reset()
        self._wrapped_at = -1  # the width the detail was last wrapped to
        self.current = 0
        self._cert_nodes: list[TreeNode[int]] = []
        self._changes: RunDiff | None = None  # since the last recorded check
        self._redraw()

    def mark_changes(self, diff: RunDiff | None) -> None:
        """Mark the leaf when it changed since the last recorded check of this domain."""
        self._changes = diff
        self._redraw()

    def path(self, key: AddrKey | None) -> list[ChainLink]:
        """The chain to show: the validated path, else the certificates as sent."""
        if key is None:
            return []
        validated, received = self._validated(key), self._received(key)
        if validated is not None and validated.path:
            return list(validated.path)
        if received is not None:
            return [ChainLink(c, "sent") for c in received.certs]
        return []

    def fingerprints(self, key: AddrKey | None) -> set[str]:
        """sha256 of every certificate of an address's chain (to route CA endpoints)."""
        found = {link.cert.sha256 for link in self.path(key)}
        received = self._received(key)
        if received is not None:
            found |= {c.sha256 for c in received.certs}
        return found

    # The report holds the chains; the pane keeps only which address and certificate it shows.
    def _received(self, key: AddrKey | None) -> ChainReceived | None:
        session = self.report.session_at(*key) if self.report and key else None
        return session.chain if session is not None else None

    def _validated(self, key: AddrKey | None) -> ChainValidated | None:
        session = self.report.session_at(*key) if self.report and key else None
        return session.validation if session is not None else None

    @property
    def finished(self) -> bool:
        return self.report is not None and self.report.finished is not None

    # ------------------------------------------------------------------ events

    def add_event(self, event: Event) -> None:
        changed: AddrKey | None = None
        if isinstance(event, (ChainReceived, ChainValidated)):
            changed = key_of(event.where)
        elif isinstance(event, DiagnosisFinished):
            changed = self.selected
        elif isinstance(event, FindingRaised):
            changed = key_of(event.finding.where)
        if changed is not None and changed == self.selected:
            self._redraw()

    def show_address(self, key: AddrKey | None) -> None:
        super().show_address(key)
        self.current = 0
        self._redraw()

    def regraded(self) -> None:
        """The report's findings were graded again: redraw the marks, stay on the certificate."""
        current = self.current
        self._redraw()
        self.jump(current)

    def jump(self, index: int) -> bool:
        if 0 <= index < len(self._cert_nodes):
            self.current = index
            self.chain_tree.call_after_refresh(self.chain_tree.move_cursor, self._cert_nodes[index])
            self._render_detail()
            return True
        return False

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[int]) -> None:
        if event.node.data is not None and event.node.data != self.current:
            self.current = event.node.data
            self._render_detail()

    # ------------------------------------------------------------------ rendering

    def _problems(self, index: int) -> list[Finding]:
        if self.selected is None or self.report is None:
            return []
        return self.report.findings_for_cert(*self.selected, index)

    def _status(self, index: int) -> str:
        problems = self._problems(index)
        if problems:
            worst = problems[0].severity
            return worst if worst != "info" else "ok"
        if self._validated(self.selected) is not None:
            return "ok"
        return "running"

    def _redraw(self) -> None:
        tree = self.chain_tree
        tree.clear()
        self._cert_nodes = []
        path = self.path(self.selected)
        if self.selected is None:
            tree.root.set_label(Text("(choose an MX address in pane 1)", "dim"))
        elif not path:
            text = (
                "(no certificate chain: this address never got to a TLS handshake)"
                if self.finished
                else "(no certificate chain for this address yet)"
            )
            tree.root.set_label(Text(text, "dim"))
        else:
            v = self._validated(self.selected)
            if v is None:
                tree.root.set_label(join(mark("running"), Text("chain received, validating...")))
            else:
                tree.root.set_label(
                    join(
                        mark("ok" if v.trusted else "error"),
                        safe_text(f"{trust_summary(v)} (trust store: {v.trust_store})"),
                    )
                )
            parent: TreeNode[int] = tree.root
            for i, link in enumerate(path):
                label = join(
                    mark(self._status(i)),
                    Text(f"[{link.source}]", "dim" if link.source == "sent" else "yellow"),
                    safe_text(link.cert.common_name or link.cert.subject, "bold" if i == 0 else ""),
                )
                if i == 0 and self.selected is not None:
                    changed = change_marks.tag(
                        c
                        for c in change_marks.of_address(self._changes, *self.selected)
                        if c.kind.startswith("cert.")
                    )
                    if changed is not None:
                        label = join(label, changed)
                parent = parent.add(label, i, expand=True)
                self._cert_nodes.append(parent)
            tree.root.expand()
        if self._cert_nodes:
            self.current = min(self.current, len(self._cert_nodes) - 1)
            # New nodes get their line numbers when the tree is next laid out.
            tree.call_after_refresh(tree.move_cursor, self._cert_nodes[self.current])
        self._render_detail()

    def _render_detail(self) -> None:
        detail = self.query_one("#chain-detail", Static)
        path = self.path(self.selected)
        if not path or self.current >= len(path):
            v = self._validated(self.selected)
            if v is not None and v.error:
                detail.update(join(mark("error"), safe_text(v.error, "red")))
            else:
                detail.update(Text(""))
            return
        link = path[self.current]
        c: CertInfo = link.cert
        # (label, body) rows: a long SAN list or a finding's why wraps under its own text,
        # not under the label (`hanging`).
        rows: list[tuple[Text, Text]] = []

        def row(name: str, value: Text) -> None:
            rows.append((Text(f"{name:<10} ", "bold"), value))

        # Failed checks first: they are why the user is looking.
        problems = self._problems(self.current)
        if problems:
            for f in problems:
                style = {"error": "bold red", "warning": "yellow"}.get(f.severity, "")
                rows.append(
                    (
                        join(mark(f.severity), Text("")),
                        join(Text(f.id, style), safe_text(f.summary, style)),
                    )
                )
                if f.detail:
                    rows.append((Text(" " * (MARK_WIDTH + 1)), safe_text(f.detail, "dim")))
            rows.append((Text(), Text()))
        else:
            rows.append((Text(), Text("no failed checks on this certificate", "dim")))
            rows.append((Text(), Text()))
        if self.current == 0 and self.selected is not None and self._changes is not None:
            since = short_time(self._changes.a.started)
            for change in change_marks.of_address(self._changes, *self.selected):
                if change.kind.startswith("cert."):
                    row("Changed", Text(f"since {since}: {change.text()}", change_marks.STYLE))
        row("Subject", safe_text(c.subject))
        row("SAN", safe_text(", ".join(c.san)) if c.san else Text("(none: CN only)", "yellow"))
        v = self._validated(self.selected) if self.current == 0 else None
        if v is not None:
            if v.names_checked:
                ok = v.name_matches
                verdict = Text(
                    " (in the certificate)" if ok else " (NOT in the certificate)",
                    "green" if ok else "bold red",
                )
                row("Names", safe_text(", ".join(v.names_checked)) + verdict)
            if v.error:
                row("Validator", safe_text(v.error, "red"))
        row("Issuer", safe_text(c.issuer))
        state, left = expiry(c.not_after)  # the engine's threshold, not a second one
        if left is None:
            when = Text("?")
        elif state == "expired":
            when = Text(f"EXPIRED {count(-left, 'day')} ago", "bold red")
        elif state == "soon":
            when = Text(f"{count(left, 'day')} left", "bold yellow")
        else:
            when = Text(f"{count(left, 'day')} left", "green")
        row("Valid", join(safe_text(f"{c.not_before} -> {c.not_after} ("), when, Text(")"), sep=""))
        row("Key", safe_text(f"{c.key_type} {c.key_bits} bits"))
        row("Signature", safe_text(c.signature_hash or "?"))
        row("EKU", safe_text(", ".join(c.eku) or "(no EKU extension)"))
        row(
            "CA", Text("yes" if c.is_ca else "no") + Text(" (self-issued)" if c.self_issued else "")
        )
        row("Serial", safe_text(c.serial))
        row("SHA-256", safe_text(c.sha256))
        row("SHA-1", safe_text(c.sha1))
        row("SPKI", safe_text(c.spki_sha256))
        for name, urls in (
            ("OCSP", c.ocsp_urls),
            ("CRL", c.crl_urls),
            ("caIssuers", c.ca_issuers_urls),
        ):
            for url in urls:
                row(name, safe_text(url))
        row("Source", Text(_SOURCE.get(link.source, link.source)))
        scroll = self.query_one("#chain-detail-scroll", VerticalScroll)
        width = scroll.scrollable_content_region.width  # 0 before the first layout
        self._wrapped_at = width
        detail.update(hanging(rows, width or 76))
        if not width:
            self.call_after_refresh(self._rewrap)

    def _rewrap(self) -> None:
        scroll = self.query_one("#chain-detail-scroll", VerticalScroll)
        if scroll.scrollable_content_region.width != self._wrapped_at:
            self._render_detail()

    def on_resize(self) -> None:
        self.call_after_refresh(self._rewrap)  # the wrapped rows depend on the width
