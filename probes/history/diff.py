"""What changed between two runs of a domain: findings, certificates, TLS, MX, policies.

Both sides are `check --json` documents as the history keeps them (snapshot.py). A change names
where it happened (host, address, port where it has one) so the UI can mark the line, and
carries the values before and after exactly as recorded; only `to_text()` makes them
terminal-safe.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from probes.model.safetext import visible

from .store import Run, RunSummary, mxlens_version

DIFF_SCHEMA = "mxlens/diff/1"

# Change kinds, in the order a person reads them: what is failing, then why.
KINDS = (
    "finding.added",
    "finding.removed",
    "finding.regraded",
    "cert.fingerprint",
    "cert.issuer",
    "cert.not_after",
    "cert.subject",
    "cert.trust",
    "tls.version",
    "smtp.starttls",
    "smtp.outcome",
    "mx.added",
    "mx.removed",
    "address.added",
    "address.removed",
    "mta_sts.mode",
    "mta_sts.id",
    "tls_rpt.record",
    "dane.status",
    "session.added",
    "session.removed",
)


@dataclass(frozen=True)
class Change:
    kind: str  # one of KINDS
    where: str  # "mx1.example.org[192.0.2.10]:25", a host, or the domain
    before: Any
    after: Any
    host: str | None = None
    address: str | None = None
    port: int | None = None
    finding: str | None = None  # the finding id, for finding.* changes

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        """One line for a person; network text made visible-safe."""
        return visible(_describe(self))


@dataclass(frozen=True)
class RunDiff:
    domain: str
    a: RunSummary
    b: RunSummary
    changes: list[Change] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def exit_code(self) -> int:
        """`mxlens diff`: 0 nothing changed, 1 something did."""
        return 1 if self.changes else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": DIFF_SCHEMA,
            "version": mxlens_version(),
            "domain": self.domain,
            "a": self.a.to_json(),
            "b": self.b.to_json(),
            "changed": self.changed,
            "changes": [c.to_json() for c in self.changes],
        }

    def to_text(self) -> str:
        out = [
            f"mxlens diff {visible(self.domain)}: run {self.a.id} ({short_time(self.a.started)}, "
            f"exit {self.a.exit}) -> run {self.b.id} ({short_time(self.b.started)}, exit {self.b.exit})"
        ]
        if not self.changes:
            out.append("No change.")
        for c in self.changes:
            out.append(f"  {c.kind:18} {visible(c.where)}: {c.text()}")
        if self.changes:
            out.append(f"{len(self.changes)} change{'s' if len(self.changes) != 1 else ''}.")
        return "\n".join(out) + "\n"


def short_time(stamp: str) -> str:
    """ "2026-11-28T14:02:05Z" -> "2026-11-28 14:02 UTC" (what a ticket says)."""
    if len(stamp) >= 16 and stamp[10] == "T":
        return f"{stamp[:10]} {stamp[11:16]} UTC"
    return stamp


def diff_runs(a: Run, b: Run) -> RunDiff:
    """Compare two stored runs (store.Run), a older than b."""
    return RunDiff(b.domain, a.summary(), b.summary(), diff_reports(a.report, b.report))


# --------------------------------------------------------------------------- comparing


def _session_where(host: str, address: str, port: int) -> str:
    return f"{host}[{address}]:{port}"


def _sessions(doc: dict[str, Any]) -> dict[tuple[str, str, int], dict[str, Any]]:
    out: dict[tuple[str, str, int], dict[str, Any]] = {}
    for mx in doc.get("mx") or []:
        for s in mx.get("sessions") or []:
            out[(str(mx.get("host")), str(s.get("address")), int(s.get("port") or 0))] = s
    return out


def _leaf(session: dict[str, Any]) -> dict[str, Any] | None:
    chain = session.get("chain") or []
    return chain[0] if chain else None


def diff_reports(a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    """Every difference that matters to mail delivery between report a (older) and b."""
    changes: list[Change] = []
    changes += _findings(a, b)
    changes += _session_changes(a, b)
    changes += _mx_changes(a, b)
    changes += _policy_changes(a, b)
    return sorted(changes, key=lambda c: KINDS.index(c.kind))


def _finding_key(f: dict[str, Any]) -> tuple[str, str]:
    return (str(f.get("id")), str(f.get("where")))


def _findings(a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    before = {_finding_key(f): f for f in a.get("findings") or []}
    after = {_finding_key(f): f for f in b.get("findings") or []}
    out: list[Change] = []

    def change(kind: str, f: dict[str, Any], old: Any, new: Any) -> Change:
        return Change(
            kind,
            str(f.get("where")),
            old,
            new,
            host=f.get("host"),
            address=f.get("address"),
            port=f.get("port"),
            finding=str(f.get("id")),
        )

    for key, f in after.items():
        if key not in before:
            out.append(change("finding.added", f, None, f.get("severity")))
        elif before[key].get("severity") != f.get("severity"):
            out.append(
                change("finding.regraded", f, before[key].get("severity"), f.get("severity"))
            )
    for key, f in before.items():
        if key not in after:
            out.append(change("finding.removed", f, f.get("severity"), None))
    return out


def _session_changes(a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    sa, sb = _sessions(a), _sessions(b)
    out: list[Change] = []
    for key, new in sb.items():
        host, address, port = key
        if key in sa:
            out += _compare_session(key, sa[key], new)
        else:
            where = _session_where(host, address, port)
            out.append(
                Change("session.added", where, None, new.get("outcome"), host, address, port)
            )
    for key, old in sa.items():
        if key not in sb:
            host, address, port = key
            where = _session_where(host, address, port)
            out.append(
                Change("session.removed", where, old.get("outcome"), None, host, address, port)
            )
    return out


def _compare_session(
    key: tuple[str, str, int], old: dict[str, Any], new: dict[str, Any]
) -> list[Change]:
    host, address, port = key
    where = _session_where(host, address, port)
    out: list[Change] = []

    def add(kind: str, before: Any, after: Any) -> None:
        if before != after:
            out.append(Change(kind, where, before, after, host, address, port))

    leaf_a, leaf_b = _leaf(old), _leaf(new)
    if leaf_a is not None and leaf_b is not None:
        add("cert.fingerprint", leaf_a.get("sha256"), leaf_b.get("sha256"))
        add("cert.issuer", leaf_a.get("issuer"), leaf_b.get("issuer"))
        add("cert.not_after", leaf_a.get("not_after"), leaf_b.get("not_after"))
        add("cert.subject", leaf_a.get("subject"), leaf_b.get("subject"))
    elif leaf_a is not None or leaf_b is not None:
        add(
            "cert.fingerprint",
            leaf_a.get("sha256") if leaf_a else None,
            leaf_b.get("sha256") if leaf_b else None,
        )
    add("cert.trust", _trusted(old), _trusted(new))
    add("tls.version", (old.get("tls") or {}).get("version"), (new.get("tls") or {}).get("version"))
    add("smtp.starttls", old.get("starttls"), new.get("starttls"))
    add("smtp.outcome", old.get("outcome"), new.get("outcome"))
    add("dane.status", _dane(old.get("dane")), _dane(new.get("dane")))
    return out


def _trusted(session: dict[str, Any]) -> bool | None:
    validation = session.get("validation")
    return None if not validation else bool(validation.get("trusted"))


def _dane(dane: dict[str, Any] | None) -> str | None:
    """DANE as one comparable phrase: the lookup status, usable records, what matched."""
    if not dane:
        return None
    matched = dane.get("matched")
    match_text = "no match"
    if matched:
        match_text = "matched {usage} {selector} {mtype}".format(
            **{k: matched.get(k) for k in ("usage", "selector", "mtype")}
        )
    return f"{dane.get('status')}, {dane.get('usable', 0)} usable, {match_text}"


def _mx_changes(a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    ma = {str(m.get("host")): m for m in a.get("mx") or []}
    mb = {str(m.get("host")): m for m in b.get("mx") or []}
    domain = str(b.get("target_ascii") or b.get("target") or "")
    out: list[Change] = []
    for host, m in mb.items():
        if host not in ma:
            out.append(Change("mx.added", domain, None, host, host=host))
            continue
        old_addrs, new_addrs = set(ma[host].get("addresses") or []), set(m.get("addresses") or [])
        for addr in sorted(new_addrs - old_addrs):
            out.append(Change("address.added", host, None, addr, host=host, address=addr))
        for addr in sorted(old_addrs - new_addrs):
            out.append(Change("address.removed", host, addr, None, host=host, address=addr))
    for host in ma:
        if host not in mb:
            out.append(Change("mx.removed", domain, host, None, host=host))
    return out


def _policy_changes(a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    pa, pb = a.get("policies") or {}, b.get("policies") or {}
    domain = str(b.get("target_ascii") or b.get("target") or "")
    sts_a, sts_b = pa.get("mta_sts") or {}, pb.get("mta_sts") or {}
    rpt_a, rpt_b = pa.get("tls_rpt") or {}, pb.get("tls_rpt") or {}
    out: list[Change] = []

    def add(kind: str, before: Any, after: Any) -> None:
        if before != after:
            out.append(Change(kind, domain, before, after))

    add("mta_sts.mode", _sts_mode(sts_a), _sts_mode(sts_b))
    add("mta_sts.id", sts_a.get("record_id"), sts_b.get("record_id"))
    add("tls_rpt.record", rpt_a.get("record"), rpt_b.get("record"))
    return out


def _sts_mode(sts: dict[str, Any]) -> str | None:
    if not sts:
        return None
    if sts.get("record") is None:
        return "not published"
    return str(sts.get("mode") or "invalid")


# --------------------------------------------------------------------------- wording

_NOUNS = {
    "cert.fingerprint": "leaf certificate (SHA-256)",
    "cert.issuer": "leaf issuer",
    "cert.not_after": "leaf notAfter",
    "cert.subject": "leaf subject",
    "cert.trust": "chain trusted",
    "tls.version": "TLS version",
    "smtp.starttls": "STARTTLS offered",
    "smtp.outcome": "session outcome",
    "mta_sts.mode": "MTA-STS mode",
    "mta_sts.id": "MTA-STS policy id",
    "tls_rpt.record": "TLS-RPT record",
    "dane.status": "DANE",
}


def _value(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _describe(c: Change) -> str:
    if c.kind == "finding.added":
        return f"new finding {c.finding} ({c.after})"
    if c.kind == "finding.removed":
        return f"finding {c.finding} ({c.before}) is gone"
    if c.kind == "finding.regraded":
        return f"finding {c.finding} re-graded from {c.before} to {c.after}"
    if c.kind == "mx.added":
        return f"MX {c.after} added"
    if c.kind == "mx.removed":
        return f"MX {c.before} removed"
    if c.kind == "address.added":
        return f"address {c.after} added"
    if c.kind == "address.removed":
        return f"address {c.before} removed"
    if c.kind == "session.added":
        return "address probed for the first time"
    if c.kind == "session.removed":
        return "address no longer probed"
    noun = _NOUNS.get(c.kind, c.kind)
    return f"{noun} changed from {_value(c.before)} to {_value(c.after)}"
