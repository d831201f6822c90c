"""Pane 1: the domain's MX hosts in preference order, their addresses, PTR names and a
status mark per address, plus the domain's policies (MTA-STS, TLS-RPT, DANE/DNSSEC).

Moving the cursor onto an address (arrow keys, Enter or a click) chooses the address the
other panes show.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from probes.history.diff import Change, RunDiff
from probes.model.events import (
    AddressesResolved,
    DaneChecked,
    DiagnosisFinished,
    Event,
    FindingRaised,
    MtaStsChecked,
    MxHost,
    MxResolved,
    PtrResolved,
    SessionFinished,
    SessionStarted,
    TlsRptChecked,
)
from probes.model.findings import SEVERITY_ORDER

from .. import change_marks
from ..safe import join, mark, safe_text
from . import AddrKey, Pane

# The colour of a policy row's detail text, by the row's graded severity.
_DETAIL_STYLE = {"error": "red", "warning": "yellow"}


class DomainTree(Tree[tuple[str, object]]):
    """The tree itself; node data is ("host", name), ("addr", AddrKey) or ("policy", name)."""


class DomainPane(Pane):
    number = 1
    pane_title = "Domain"

    class AddressChosen(Message):
        """The user (or the first result) chose an MX address."""

        def __init__(self, key: AddrKey) -> None:
            super().__init__()
            self.key = key

    def compose(self) -> ComposeResult:
        tree = DomainTree(Text("(no domain yet: press / to enter one)"), id="domain-tree")
        tree.show_root = True
        tree.guide_depth = 2
        yield tree

    def on_mount(self) -> None:
        self.reset()

    @property
    def domain_tree(self) -> DomainTree:
        return self.query_one(DomainTree)

    def focus_target(self) -> Widget:
        return self.domain_tree

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        super().reset()
        # What the run found is the report's (the properties below); the pane keeps the
        # target it was told, how the run ended for the app, the tree and its marks.
        self.domain: str | None = None
        self._failed: DiagnosisFinished | None = None  # the check could not be made
        self.cancelled = False
        self._host_nodes: dict[str, TreeNode[tuple[str, object]]] = {}
        self._addr_nodes: dict[AddrKey, TreeNode[tuple[str, object]]] = {}
        self._changes: RunDiff | None = None  # since the last recorded check
        tree = self.domain_tree
        tree.clear()
        tree.root.set_label(Text("(no domain yet: press / to enter one)"))
        tree.root.expand()
        self._policy_node = tree.root.add(Text("Policies"), ("policy", ""), expand=True)
        self._render_policies()

    @property
    def mx(self) -> MxResolved | None:
        return self.report.mx_resolved if self.report is not None else None

    @property
    def hosts(self) -> list[MxHost]:
        return list(self.mx.hosts) if self.mx is not None else []

    @property
    def mtasts(self) -> MtaStsChecked | None:
        return self.report.mtasts if self.report is not None else None

    @property
    def tlsrpt(self) -> TlsRptChecked | None:
        return self.report.tlsrpt if self.report is not None else None

    @property
    def finished(self) -> DiagnosisFinished | None:
        if self._failed is not None:
            return self._failed
        return self.report.finished if self.report is not None else None

    def _resolved(self, host: str) -> AddressesResolved | None:
        return self.report.resolved.get(host) if self.report is not None else None

    def _addresses(self, host: str) -> tuple[str, ...]:
        resolved = self._resolved(host)
        return resolved.addresses if resolved is not None else ()

    def mark_changes(self, diff: RunDiff | None) -> None:
        """Show what changed since the last recorded check of this domain."""
        self._changes = diff
        self._relabel_all()
        self._render_root()
        self._render_policies()

    def start(self, target: str) -> None:
        """A diagnosis of target begins."""
        self.domain = target
        self.domain_tree.root.set_label(
            join(safe_text(target, "bold"), Text("(resolving MX...)", "dim"))
        )

    def addresses_in_order(self) -> list[AddrKey]:
        return [(h.host, a) for h in self.hosts for a in self._addresses(h.host)]

    def status(self, key: AddrKey) -> str:
        """error beats everything (it is final); otherwise the session's progress decides."""
        worst = self.report.address_status(*key) if self.report is not None else None
        sevs = [worst] if worst else []
        state = self.report.session_state(*key) if self.report is not None else None
        if "error" in sevs:
            return "error"
        if state == "running" or state is None:
            if self.cancelled:
                return "cancelled"
            return "running" if state == "running" else "pending"
        if "warning" in sevs or state != "ok":
            return "warning"
        return "ok"

    # ------------------------------------------------------------------ events

    def add_event(self, event: Event) -> None:
        if isinstance(event, MxResolved):
            self._render_root()
            for h in self.hosts:
                self._host_node(h.host)
        elif isinstance(event, AddressesResolved):
            node = self._host_node(event.host)
            addresses = self._addresses(event.host)
            for a in addresses:
                key = (event.host, a)
                if key not in self._addr_nodes:
                    self._addr_nodes[key] = node.add_leaf(self._addr_label(key), ("addr", key))
            node.expand()
            self._relabel_host(event.host)
            if self.selected is None and addresses:
                self.choose((event.host, addresses[0]))
        elif isinstance(event, PtrResolved):
            for key in self._addr_nodes:
                if key[1] == event.address:
                    self._relabel(key)
        elif isinstance(event, (SessionStarted, SessionFinished)) and event.purpose == "main":
            if event.where.address is not None:
                self._relabel((event.where.host, event.where.address))
        elif isinstance(event, FindingRaised):
            f = event.finding  # already in the report: the marks are its answer
            if f.id.startswith(("mtasts.", "dane.")):
                self._render_policies()
            for key in list(self._addr_nodes):
                if key[0] == f.where.host and f.where.address in (None, key[1]):
                    self._relabel(key)
            self._relabel_host(f.where.host)
        elif isinstance(event, (MtaStsChecked, TlsRptChecked, DaneChecked)):
            self._render_policies()
        elif isinstance(event, DiagnosisFinished):
            self._render_root()
            self._relabel_all()
            self._render_policies()  # "not checked yet" becomes "not checked"

    def regraded(self) -> None:
        """The report's findings were graded again (a kept connector): redraw the marks."""
        self._relabel_all()
        self._render_policies()

    def mark_failed(self, error: str) -> None:
        """The check could not be made (bad input, a resolver that does not answer)."""
        self._failed = DiagnosisFinished(self.domain or "", 0.0, None, error)
        self._render_root()
        self._relabel_all()
        self._render_policies()  # "not checked", not "not checked yet": nothing will come

    def mark_cancelled(self) -> None:
        self.cancelled = True
        if self.finished is None:
            self._failed = DiagnosisFinished(self.domain or "", 0.0, None, "cancelled")
        self._render_root()
        self._relabel_all()

    # ------------------------------------------------------------------ selection

    def choose(self, key: AddrKey) -> None:
        """Move the cursor to an address (the Tree then reports it as highlighted)."""
        node = self._addr_nodes.get(key)
        self.selected = key
        if node is not None:
            # New nodes get their line numbers when the tree is next laid out.
            self.domain_tree.call_after_refresh(self.domain_tree.move_cursor, node)
        self.post_message(self.AddressChosen(key))

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[tuple[str, object]]) -> None:
        self._chose_node(event.node)

    def on_tree_node_selected(self, event: Tree.NodeSelected[tuple[str, object]]) -> None:
        self._chose_node(event.node)

    def _chose_node(self, node: TreeNode[tuple[str, object]]) -> None:
        data = node.data
        if data is None:
            return
        kind, value = data
        key: AddrKey | None = None
        if kind == "addr" and isinstance(value, tuple):
            key = (str(value[0]), str(value[1]))
        elif kind == "host":
            addrs = self._addresses(str(value))
            key = (str(value), addrs[0]) if addrs else None
        if key is not None and key != self.selected:
            self.selected = key
            self.post_message(self.AddressChosen(key))

    # ------------------------------------------------------------------ rendering

    def _render_root(self) -> None:
        label = safe_text(self.domain or "", "bold")
        mx = self.mx
        parts: list[Text | str] = [label]
        if mx is not None:
            if mx.domain_ascii and mx.domain_ascii != mx.domain:
                parts.append(safe_text(f"({mx.domain_ascii})", "dim"))
            if mx.null_mx:
                parts.append(Text("null MX: accepts no mail", "bold red"))
            elif mx.implicit:
                parts.append(Text("no MX: implicit MX (the domain's own address)", "yellow"))
            elif mx.overridden:
                parts.append(Text(f"{len(mx.hosts)} host(s) from --mx, no MX lookup", "dim"))
            else:
                parts.append(Text(f"{len(mx.hosts)} MX", "dim"))
        if self.finished is not None:
            if self.cancelled:
                parts.append(Text("cancelled", "magenta"))
            elif self.finished.error:
                # A tree label never wraps: pane 5 has the whole message.
                parts.append(safe_text(f"could not check: {self.finished.error}", "bold red"))
            else:
                parts.append(Text(f"done in {self.finished.elapsed_ms / 1000:.1f} s", "dim"))
        note = change_marks.summary(self._changes)
        if note is not None:
            parts.append(note)
        self.domain_tree.root.set_label(join(*parts))

    def _host_node(self, host: str) -> TreeNode[tuple[str, object]]:
        node = self._host_nodes.get(host)
        if node is None:
            node = self.domain_tree.root.add(
                self._host_label(host), ("host", host), before=self._policy_node, expand=True
            )
            self._host_nodes[host] = node
        return node

    def _host_label(self, host: str) -> Text:
        info = next((h for h in self.hosts if h.host == host), None)
        keys = [k for k in self._addr_nodes if k[0] == host]
        statuses = [self.status(k) for k in keys]
        found = self.report.findings_for(host) if self.report is not None else []
        sevs = [f.severity for f in found if f.where.address is None]
        worst = "pending"
        for s in ("error", "warning", "running", "cancelled", "ok"):
            if s in statuses or (s in ("error", "warning") and s in sevs):
                worst = s
                break
        parts: list[Text | str] = [mark(worst)]
        if info is not None:
            parts.append(Text(str(info.preference), "dim"))
        parts.append(safe_text(host, "bold"))
        if info is not None and info.is_ip_literal:
            parts.append(Text("IP literal (not a host name)", "red"))
        resolved = self._resolved(host)
        if resolved is not None and not resolved.addresses:
            parts.append(Text("no A/AAAA", "bold red"))
        cname = resolved.cname if resolved is not None else None
        if cname:
            # an MX target must not be an alias (RFC 2181 10.3): dns.mx_is_cname grades it
            parts.append(join(Text("CNAME", "yellow"), Text("->", "dim"), safe_text(cname)))
        changed = change_marks.tag(change_marks.of_host(self._changes, host))
        if changed is not None:
            parts.append(changed)
        return join(*parts)

    def _addr_label(self, key: AddrKey) -> Text:
        parts: list[Text | str] = [mark(self.status(key)), safe_text(key[1])]
        ptr = self.report.ptr_of(key[1]) if self.report is not None else None
        if ptr is None:
            parts.append(Text("PTR ?", "dim"))
        elif not ptr.names:
            parts.append(Text("no PTR", "dim"))
        else:
            names = safe_text(", ".join(ptr.names))
            confirm = (
                Text("(confirmed)", "dim")
                if ptr.forward_confirmed
                else Text("(does not resolve back)", "yellow")
            )
            parts.extend([Text("PTR", "dim"), names, confirm])
        session = self.report.session_at(*key) if self.report is not None else None
        if session is not None and session.throttled:
            parts.append(Text("throttled (421): no TLS verdict", "yellow"))
        changed = change_marks.tag(change_marks.of_address(self._changes, *key))
        if changed is not None:
            parts.append(changed)
        return join(*parts)

    def _relabel(self, key: AddrKey) -> None:
        node = self._addr_nodes.get(key)
        if node is not None:
            node.set_label(self._addr_label(key))

    def _relabel_host(self, host: str) -> None:
        node = self._host_nodes.get(host)
        if node is not None:
            node.set_label(self._host_label(host))

    def _relabel_all(self) -> None:
        for key in self._addr_nodes:
            self._relabel(key)
        for host in self._host_nodes:
            self._relabel_host(host)

    def _graded(self, prefix: str, host: str | None = None, exclude: str = "") -> str | None:
        """The worst graded severity of the findings with this id prefix (about `host`, when
        given), None when there are none. The policy rows take their mark from this, so
        pane 1 never disagrees with the findings bar."""
        graded = self.report.findings if self.report is not None else []
        sevs = [
            f.severity
            for f in graded
            if f.id.startswith(prefix)
            and f.id != exclude
            and (host is None or f.where.host == host)
        ]
        return min(sevs, key=SEVERITY_ORDER.__getitem__) if sevs else None

    def _render_policies(self) -> None:
        node = self._policy_node
        node.remove_children()
        node.add_leaf(
            _with_tag(self._mtasts_label(), change_marks.of_kind(self._changes, "mta_sts.")),
            ("policy", "mta-sts"),
        )
        if self.mtasts is not None and self.mtasts.mode and self.hosts:
            for h in self.hosts:
                covered = bool(self.report and self.report.mtasts_covers(h.host))
                # uncovered in testing mode is reported by mtasts.testing, not per host
                sev = self._graded("mtasts.mx_not_covered", h.host) or ("ok" if covered else "info")
                node.add_leaf(
                    join(
                        mark(sev),
                        safe_text(h.host),
                        Text("covered" if covered else "NOT covered by the policy"),
                    ),
                    ("policy", "mta-sts"),
                )
        node.add_leaf(
            _with_tag(self._tlsrpt_label(), change_marks.of_kind(self._changes, "tls_rpt.")),
            ("policy", "tls-rpt"),
        )
        node.add_leaf(self._dnssec_label(), ("policy", "dnssec"))
        for h in self.hosts:
            node.add_leaf(self._dane_label(h.host), ("policy", "dane"))

    def _mtasts_label(self) -> Text:
        m = self.mtasts
        if m is None:
            return join(
                mark("pending" if not self.finished else "info"),
                Text("MTA-STS: not checked yet" if not self.finished else "MTA-STS: not checked"),
            )
        graded = self._graded("mtasts.", exclude="mtasts.mx_not_covered")
        if m.error:
            # a failed TXT lookup raises no finding: senders act as if no policy was published
            sev = graded or "info"
            return join(mark(sev), Text("MTA-STS:"), safe_text(m.error, _DETAIL_STYLE.get(sev, "")))
        if not m.record:
            return join(mark(graded or "info"), Text("MTA-STS: none published"))
        mode = m.mode or "?"
        sev = graded or ("ok" if mode == "enforce" else "info")
        parts: list[Text | str] = [mark(sev), Text("MTA-STS:"), safe_text(mode, "bold")]
        if m.record_id:
            parts.append(safe_text(f"id {m.record_id}", "dim"))
        if m.max_age is not None:
            parts.append(Text(f"max_age {m.max_age}", "dim"))
        return join(*parts)

    def _tlsrpt_label(self) -> Text:
        r = self.tlsrpt
        if r is None and self.finished:
            return join(mark("info"), Text("TLS-RPT: not checked"))
        if r is None:
            return join(mark("pending"), Text("TLS-RPT: not checked yet"))
        if r.error:
            return join(mark("warning"), Text("TLS-RPT:"), safe_text(r.error, "yellow"))
        if not r.record:
            return join(mark("info"), Text("TLS-RPT: none (nobody is told when TLS fails)"))
        return join(mark("ok"), Text("TLS-RPT:"), safe_text(", ".join(r.rua) or r.record))

    def _dnssec_label(self) -> Text:
        if self.mx is None:
            return join(
                mark("pending"),
                Text("DNSSEC: not checked" + ("" if self.finished else " yet")),
            )
        if self.mx.overridden:
            return join(mark("pending"), Text("DNSSEC: MX not looked up (--mx names the hosts)"))
        if self.mx.authenticated:
            return join(mark("ok"), Text("DNSSEC: MX answer validated (AD)"))
        return join(mark("info"), Text("DNSSEC: MX answer not validated (no AD)"))

    def _dane_label(self, host: str) -> Text:
        d = self.report.dane_of.get(host) if self.report is not None else None
        name = safe_text(host)
        if d is None:
            return join(
                mark("pending" if not self.finished else "info"),
                Text("DANE"),
                name,
                Text("not checked"),
            )
        graded = self._graded("dane.", host)
        if d.status in ("NXDOMAIN", "NODATA") or (d.status == "NOERROR" and not d.records):
            return join(mark(graded or "info"), Text("DANE"), name, Text("no TLSA"))
        if d.status != "NOERROR":
            sev = graded or "info"
            return join(
                mark(sev),
                Text("DANE"),
                name,
                safe_text(f"TLSA lookup {d.status}", _DETAIL_STYLE.get(sev, "")),
            )
        parts: list[Text | str] = [
            Text("DANE"),
            name,
            Text(f"{len(d.records)} TLSA, {d.usable} usable"),
        ]
        parts.append(Text("DNSSEC ok" if d.authenticated else "not DNSSEC-validated", "dim"))
        sev = graded or ("ok" if d.matched is not None else "info")
        if d.matched is not None:
            parts.append(
                safe_text(f"matched {d.matched.usage} {d.matched.selector} {d.matched.mtype}")
            )
        elif d.authenticated and d.usable:
            parts.append(Text("no match", _DETAIL_STYLE.get(sev, "")))
        return join(mark(sev), *parts)


def _with_tag(label: Text, changes: list[Change]) -> Text:
    changed = change_marks.tag(changes)
    return label if changed is None else join(label, changed)
