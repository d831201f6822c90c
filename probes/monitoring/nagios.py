"""`check --nagios`: the monitoring-plugins output (Nagios, Icinga, Checkmk, Naemon).

One status line `MXLENS STATE - text | perfdata`, then one long-output line per finding
(monitoring-plugins doc/developer-guidelines). The state is the check's exit code, raised to
WARNING/CRITICAL when an element of a chain expires within the -w/-c days, as check_ssl_cert
does. Timeouts, 421 throttles and a resolver that does not answer are WARNING or CRITICAL with
the server's words: the guidelines keep UNKNOWN for a check that could not run (bad input).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from probes.model.findings import sort_findings
from probes.model.safetext import visible
from probes.monitoring.facts import SEVERITIES, CheckFacts, check_facts, now_utc
from probes.report import Report

STATES: dict[int, str] = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}
# check_ssl_cert's defaults: warn 20 days before notAfter, critical at 15.
DEFAULT_WARN_DAYS = 20.0
DEFAULT_CRIT_DAYS = 15.0
_MAX_LONG_LINES = 50


@dataclass(frozen=True)
class Thresholds:
    warn_days: float = DEFAULT_WARN_DAYS
    crit_days: float = DEFAULT_CRIT_DAYS


def _plain(text: str) -> str:
    """Plugin output is one line per item and `|` starts perfdata: neither may leak in."""
    return visible(text).replace("|", "/").replace("\n", " ")


def _label(text: str) -> str:
    """A perfdata label: quoted, so `'` and `=` must go (the guidelines forbid both)."""
    return "'" + text.replace("'", "").replace("=", "_") + "'"


def _num(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def _perfdata(facts: CheckFacts, limits: Thresholds, now: datetime) -> list[str]:
    out: list[str] = []
    several = len(facts.sessions) > 1
    for s in facts.sessions:
        prefix = f"{s.mx}_{s.address}_" if several else ""
        for elem in s.chain:
            days = round(elem.days_left(now), 2)
            out.append(
                f"{_label(f'{prefix}days_chain_elem{elem.position}')}={_num(days)}"
                f";{_num(limits.warn_days)};{_num(limits.crit_days)};;"
            )
        if s.handshake_s is not None:
            out.append(f"{_label(prefix + 'handshake_time')}={_num(s.handshake_s)}s;;;0;")
    out.append(f"{_label('connections')}={facts.connections};;;0;")
    for severity in SEVERITIES[:3]:
        out.append(f"{_label('findings_' + severity)}={facts.findings_by_severity[severity]};;;0;")
    if facts.elapsed_s is not None:
        out.append(f"{_label('time')}={_num(round(facts.elapsed_s, 3))}s;;;0;")
    return out


def expiry_state(facts: CheckFacts, limits: Thresholds, now: datetime) -> tuple[int, list[str]]:
    """The -w/-c state of the chains and a line for every element past a threshold."""
    state = 0
    lines: list[str] = []
    for s in facts.sessions:
        for elem in s.chain:
            days = elem.days_left(now)
            if days <= limits.crit_days:
                level, word, limit = 2, "CRITICAL", limits.crit_days
            elif days <= limits.warn_days:
                level, word, limit = 1, "WARNING", limits.warn_days
            else:
                continue
            state = max(state, level)
            when = f"expires in {days:.1f} days" if days >= 0 else f"expired {-days:.1f} days ago"
            lines.append(
                f"{word} expiry: chain element {elem.position} ({_plain(elem.subject)}) of "
                f"{s.label} {when} (threshold {_num(limit)})"
            )
    return state, lines


def _summary(report: Report, facts: CheckFacts, now: datetime) -> str:
    findings = [f for f in sort_findings(report.findings) if f.severity in ("error", "warning")]
    counts = ", ".join(
        f"{n} {sev}{'s' if n != 1 else ''}"
        for sev in ("error", "warning")
        if (n := facts.findings_by_severity[sev])
    )
    if findings:
        top = findings[0]
        more = f" ({counts})" if len(findings) > 1 else ""
        return f"{_plain(top.summary)} [{top.id} at {_plain(str(top.where))}]{more}"
    parts = []
    version = facts.tls_version()
    if version:
        parts.append(version)
    days = facts.leaf_days_left(now)
    if days is not None:
        parts.append(f"leaf expires in {days:.0f} days")
    if not facts.sessions:
        parts.append("no MX address probed")
    return ", ".join(parts) or "no problems found"


def render(report: Report, limits: Thresholds | None = None) -> tuple[str, int]:
    """The plugin output (ending in a newline) and its exit status."""
    limits = limits or Thresholds()
    now = now_utc()
    facts = check_facts(report)
    expiry, expiry_lines = expiry_state(facts, limits, now)
    state = max(facts.exit, expiry)
    line = f"MXLENS {STATES[state]} - {_plain(report.target)}: {_summary(report, facts, now)}"
    out = [f"{line} | {' '.join(_perfdata(facts, limits, now))}"]
    out.extend(expiry_lines)
    shown = [f for f in sort_findings(report.findings) if f.severity != "ok"]
    for f in shown[:_MAX_LONG_LINES]:
        out.append(f"{f.severity.upper()} {f.id} {_plain(str(f.where))}: {_plain(f.summary)}")
    if len(shown) > _MAX_LONG_LINES:
        out.append(f"... {len(shown) - _MAX_LONG_LINES} more findings (see check --json)")
    return "\n".join(out) + "\n", state


def failure(message: str, *, started: bool) -> tuple[str, int]:
    """The output when the check raised: CRITICAL once it reached the network (a resolver
    that does not answer is an outage to alert on), UNKNOWN for bad input."""
    state = 2 if started else 3
    return f"MXLENS {STATES[state]} - {_plain(message)}\n", state
