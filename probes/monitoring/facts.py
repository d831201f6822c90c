"""The figures monitoring systems track, read once from a finished Report.

Nagios perfdata, Prometheus metrics and audit rows all show the same facts (days left on each
chain element, TLS version, handshake time, connections, findings by severity); reading them
here keeps the three in agreement.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from probes.model.findings import SEVERITY_ORDER
from probes.report import Report

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


def _handshake_seconds(session: dict[str, Any]) -> float | None:
    """From the ClientHello to the handshake's end, as the transcript timed them (the history
    keeps no transcript, so a stored run has no handshake time)."""
    tls = [line for line in session.get("transcript") or [] if line.get("dir") == "TLS"]
    start = next((line["t_ms"] for line in tls if "ClientHello" in line["text"]), None)
    end = next((line["t_ms"] for line in tls if line["text"].startswith("handshake done")), None)
    if start is None or end is None or end < start:
        return None
    return round((float(end) - float(start)) / 1000, 6)


def _chain(session: dict[str, Any]) -> tuple[ChainElement, ...]:
    validation = session.get("validation") or {}
    certs = validation.get("path") or session.get("chain") or []
    out = []
    for i, cert in enumerate(certs, start=1):
        try:
            not_after = parse_time(str(cert["not_after"]))
        except (KeyError, ValueError):
            continue
        out.append(
            ChainElement(
                i, str(cert.get("subject", "")), str(cert.get("source", "sent")), not_after
            )
        )
    return tuple(out)


def facts_from_doc(doc: dict[str, Any]) -> CheckFacts:
    """The facts of a `check --json` document, live or as the history stored it."""
    elapsed = doc.get("elapsed_ms")
    facts = CheckFacts(
        domain=str(doc.get("target", "")),
        exit=int(doc.get("exit_code", 3)),
        elapsed_s=elapsed / 1000 if isinstance(elapsed, (int, float)) else None,
    )
    for mx in doc.get("mx") or []:
        for s in mx.get("sessions") or []:
            tls = s.get("tls") or {}
            facts.sessions.append(
                SessionFacts(
                    mx=str(mx.get("host", "")),
                    address=str(s.get("address", "")),
                    port=int(s.get("port") or 0),
                    outcome=str(s.get("outcome") or ""),
                    starttls=s.get("starttls"),
                    connections=int(s.get("connections") or 0),
                    tls_version=tls.get("version"),
                    cipher=tls.get("cipher"),
                    handshake_s=_handshake_seconds(s),
                    chain=_chain(s),
                )
            )
    findings = doc.get("findings") or []
    for f in findings:
        facts.findings_by_severity[f["severity"]] += 1
        key = (str(f.get("host") or ""), str(f.get("address") or ""), f["id"], f["severity"])
        facts.findings[key] += 1
    ranked = sorted(findings, key=lambda f: SEVERITY_ORDER.get(f["severity"], 9))
    if ranked and ranked[0]["severity"] != "ok":
        facts.worst_id = ranked[0]["id"]
        facts.worst_severity = ranked[0]["severity"]
    return facts


def check_facts(report: Report) -> CheckFacts:
    return facts_from_doc(report.to_json())


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
