"""The figures monitoring systems track, read once from a finished Report.

Nagios perfdata, Prometheus metrics and audit rows all show the same facts (days left on each
chain element, TLS version, handshake time, connections, findings by severity); reading them
here keeps the three in agreement.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

from probes.model.events import CertInfo
from probes.model.findings import SEVERITY_ORDER, sort_findings
from probes.report import Report, SessionReport

SEVERITIES: tuple[str, ...] = tuple(SEVERITY_ORDER)  # error, warning, info, ok


def parse_time(text: str) -> datetime:
    """CertInfo times ("2027-01-01T00:00:00Z") as aware datetimes."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class ChainElement:
    position: int  # 1 = leaf, as check_ssl_cert numbers days_chain_elemN
    subject: str
    source: str  # sent | aia | store
    not_after: datetime

    def days_left(self, now: datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400


@dataclass(frozen=True)
class SessionFacts:
    mx: str
    address: str
    port: int
    outcome: str
    starttls: bool | None
    connections: int
    tls_version: str | None
    cipher: str | None
    handshake_s: float | None
    chain: tuple[ChainElement, ...]

    @property
    def label(self) -> str:
        return f"{self.mx}[{self.address}]:{self.port}"


@dataclass
class CheckFacts:
    domain: str
    exit: int
    elapsed_s: float | None
    sessions: list[SessionFacts] = field(default_factory=list)
    findings_by_severity: Counter[str] = field(default_factory=Counter)
    # (mx, address, id, severity) -> count; mx/address "" for domain-wide findings
    findings: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    worst_id: str | None = None
    worst_severity: str = "ok"

    @property
    def connections(self) -> int:
        return sum(s.connections for s in self.sessions)

    def leaf_days_left(self, now: datetime) -> float | None:
        """The days left on the route's first leaf (the first MX address that gave one)."""
        for s in self.sessions:
            if s.chain:
                return s.chain[0].days_left(now)
        return None

    def tls_version(self) -> str | None:
        for s in self.sessions:
            if s.tls_version:
                return s.tls_version
        return None


def _handshake_seconds(session: SessionReport) -> float | None:
    """From the ClientHello to the handshake's end, as the transcript timed them."""
    tls = [line for line in session.transcript if line.dir == "TLS"]
    start = next((line.t_ms for line in tls if "ClientHello" in line.text), None)
    end = next((line.t_ms for line in tls if line.text.startswith("handshake done")), None)
    if start is None or end is None or end < start:
        return None
    return round((end - start) / 1000, 6)


def _chain(session: SessionReport) -> tuple[ChainElement, ...]:
    certs: list[tuple[CertInfo, str]]
    if session.validation is not None and session.validation.path:
        certs = [(link.cert, link.source) for link in session.validation.path]
    elif session.chain is not None:
        certs = [(cert, "sent") for cert in session.chain.certs]
    else:
        certs = []
    out = []
    for i, (cert, source) in enumerate(certs, start=1):
        try:
            not_after = parse_time(cert.not_after)
        except ValueError:
            continue
        out.append(ChainElement(i, cert.subject, source, not_after))
    return tuple(out)


def check_facts(report: Report) -> CheckFacts:
    facts = CheckFacts(
        domain=report.target,
        exit=report.exit_code(),
        elapsed_s=report.finished.elapsed_ms / 1000 if report.finished else None,
    )
    for mx in report.mx_in_order():
        for s in mx.sessions.values():
            facts.sessions.append(
                SessionFacts(
                    mx=mx.host,
                    address=s.address,
                    port=s.port,
                    outcome=s.outcome or "",
                    starttls=s.starttls,
                    connections=s.connections,
                    tls_version=s.tls.version if s.tls else None,
                    cipher=s.tls.cipher if s.tls else None,
                    handshake_s=_handshake_seconds(s),
                    chain=_chain(s),
                )
            )
    ordered = sort_findings(report.findings)
    for f in ordered:
        facts.findings_by_severity[f.severity] += 1
        facts.findings[(f.where.host, f.where.address or "", f.id, f.severity)] += 1
    if ordered and ordered[0].severity != "ok":
        facts.worst_id = ordered[0].id
        facts.worst_severity = ordered[0].severity
    return facts


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
