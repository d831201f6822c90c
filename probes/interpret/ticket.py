"""Ticket reports: the walk-through and the findings as Markdown or plain text, for a helpdesk
ticket or a mail to the partner's admin.

Network text (banners, certificate fields, URLs, error strings that quote them) goes through
`safetext.visible()` first; in Markdown it is then backslash-escaped inline, or put in a fenced
block whose fence is longer than any backtick run inside, so a hostile banner can neither drive
a terminal nor inject links, HTML or headings into the ticket system.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from probes.history.diff import short_time
from probes.interpret.walk import Walk, build_walk, fallback_sentence, walk_text
from probes.model.findings import exit_code, sort_findings
from probes.model.names import canonical
from probes.model.safetext import visible
from probes.model.version import mxlens_version
from probes.report import VERDICT_TEXT, Report

if TYPE_CHECKING:
    from probes.history.diff import RunDiff
    from probes.interpret.connectors import ConnectorResult

Format = Literal["md", "text"]
# Only what can format, link or embed is escaped, so that plain-text ticket systems that
# show Markdown source stay readable ("starttls_offered", "[192.0.2.1]", "->"):
# - always: backslash, backtick (code), "*" (emphasis, also inside words), "<" (HTML and
#   autolinks), "|" (our tables), "~" (strike-through);
_MD_ALWAYS = re.compile(r"([\\`*<|~])")
# - "_" only at a word's edge: inside a word it never emphasises (CommonMark 6.2);
_MD_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
# - "&" only where it would start an entity; "[" and "]" only where text has the shape of a
#   link ("[x](" or "[x][y]"): a lone pair links nothing unless a definition exists, and a
#   definition ("[x]: url") must start a line (below);
_MD_ENTITY = re.compile(r"&(?=#?[A-Za-z0-9]+;)")
_MD_LINK_SHAPE = re.compile(r"\[[^\]]*\][(\[]")
# - at the start of a line: headings, lists, quotes, setext underlines, reference definitions.
_LINE_START = re.compile(r"^([#+\-=>\[]|\d+(?=[.)]))")


def md(text: str | None) -> str:
    """Untrusted text as inert inline Markdown: controls visible, markup escaped."""
    out = _MD_ALWAYS.sub(r"\\\1", visible(text or ""))
    out = _MD_UNDERSCORE.sub(r"\\_", out)
    out = _MD_ENTITY.sub(r"\\&", out)
    if _MD_LINK_SHAPE.search(out):
        out = re.sub(r"([\[\]])", r"\\\1", out)
    match = _LINE_START.match(out)
    if match is not None and not out.startswith("\\"):
        end = match.end()
        out = out[:end] + "\\" + out[end:] if match.group(1)[0].isdigit() else "\\" + out
    return out


def fenced(lines: list[str], info: str = "text") -> str:
    """Lines (already visible()) in a fenced code block no line can close early."""
    longest = max((len(m) for line in lines for m in re.findall(r"`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return "\n".join([f"{fence}{info}", *lines, fence])


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def changes_lines(changes: RunDiff | None) -> list[str]:
    """ "since 2026-11-28 14:02 UTC: leaf issuer changed from ... to ..." per change, visible-safe;
    [] when there is no earlier run to compare with."""
    if changes is None:
        return []
    since = short_time(changes.a.started)
    if not changes.changes:
        return [f"no change since {since} (run {changes.a.id})"]
    return [f"since {since}: {c.text()} ({visible(c.where)})" for c in changes.changes]


def ticket_markdown(
    report: Report,
    walk: Walk | None = None,
    connector: ConnectorResult | None = None,
    changes: RunDiff | None = None,
) -> str:
    """The ticket report in Markdown; `changes`: what changed since the last recorded check."""
    walk = walk or (connector.walk if connector else build_walk(report))
    findings = list(connector.findings) if connector else report.findings
    out = [f"# Mail to {md(domain_name(report))}: {VERDICT_TEXT[exit_code(findings)]}", ""]
    out.append(f"- Checked: {_now()} with mxlens {mxlens_version()}, sender policy `{walk.policy}`")
    if walk.route is not None:
        out.append(f"- Route followed: {md(str(walk.route))} (the first MX address that answers)")
    if report.target_ascii and report.target_ascii != report.target:
        out.append(f"- Domain (IDNA): {md(report.target_ascii)}")
    if connector is not None:
        out.append(f"- Connector: {md(connector.profile.title)} (`{connector.profile.name}`)")
        if connector.tls_domain:
            out.append(f"- {md(connector.profile.name_label)}: {md(connector.tls_domain)}")
    out.append("")
    out.append("## Verdict")
    out.append("")
    if connector is not None:
        out.append(f"**{md(connector.verdict)}**")
        out.append("")
    out.append(md(walk.verdict))
    out.append("")
    if changes is not None:
        out.append("## Changes since the last check")
        out.append("")
        out.extend(f"- {md(line)}" for line in changes_lines(changes))
        out.append("")
    out.append("## Walk-through")
    out.append("")
    out.append("| # | Step | Result | Findings | Evidence |")
    out.append("|---|---|---|---|---|")
    for i, step in enumerate(walk.steps, 1):
        ids = ", ".join(f"`{x}`" for x in step.findings + step.notes)
        first = md(step.evidence[0]) if step.evidence else ""
        out.append(
            f"| {i} | {md(step.title)} (`{step.name}`) | **{step.status.upper()}** | {ids} | {first} |"
        )
    out.append("")
    if walk.first_failure is not None:
        step = walk.step(walk.first_failure)
        if walk.fallback is not None:
            # Mail still arrives through the fallback: this is where one MX stops it.
            out.append(f"## Where {md(str(walk.route))} stops: {md(step.title)}")
            out.append("")
            out.append(md(fallback_sentence(walk)))
            out.append("")
        else:
            out.append(f"## Where it stops: {md(step.title)}")
            out.append("")
        if step.why:
            label = "Why mail fails there" if walk.fallback is not None else "Why mail fails"
            out.append(f"**{label}:** {md(step.why)}")
            out.append("")
        if step.fix:
            out.append(f"**What to do:** {md(step.fix)}")
            out.append("")
        # The findings' own summaries are under "Findings" just below: not twice.
        summaries = {f.summary for f in findings}
        evidence = [e for e in step.evidence if e not in summaries]
        if evidence:
            out.append("Evidence:")
            out.append("")
            out.append(fenced([visible(e) for e in evidence]))
            out.append("")
    shown = [f for f in sort_findings(findings) if f.severity != "ok"]
    if shown:
        out.append("## Findings (worst first)")
        out.append("")
        for f in shown:
            out.append(f"### {f.severity.upper()} `{f.id}` at {md(str(f.where))}")
            out.append("")
            out.append(md(f.summary))
            out.append("")
            if f.severity in ("error", "warning"):
                out.append(f"- **Why:** {md(f.detail)}")
                if f.fix:
                    out.append(f"- **Fix:** {md(f.fix)}")
                out.append("")
    if walk.elsewhere:
        out.append("## Other MX hosts and addresses")
        out.append("")
        out.extend(f"- {md(line)}" for line in walk.elsewhere)
        out.append("")
    transcript = _route_transcript(report, walk)
    if transcript:
        out.append("## SMTP transcript of the route")
        out.append("")
        out.append(fenced(transcript))
        out.append("")
    return "\n".join(out)


def ticket_text(
    report: Report,
    walk: Walk | None = None,
    connector: ConnectorResult | None = None,
    changes: RunDiff | None = None,
) -> str:
    """The ticket report as plain text (terminal-safe)."""
    walk = walk or (connector.walk if connector else build_walk(report))
    parts = [
        f"mxlens {mxlens_version()} ticket report for {visible(domain_name(report))}, {_now()}"
    ]
    if connector is not None:
        parts.append(
            f"Connector {connector.profile.name} ({connector.profile.title}): {visible(connector.verdict)}"
        )
    if changes is not None:
        parts.append("Changes since the last check:")
        parts.extend(f"  {line}" for line in changes_lines(changes))
    parts.append("")
    parts.append(walk_text(walk))
    parts.append(report.to_text())
    return "\n".join(parts)


def domain_name(report: Report) -> str:
    """The domain as a ticket names it: canonical (lower case, no trailing dot), not as typed
    ("Expired.Lab.Test." is expired.lab.test)."""
    return canonical(report.target) or report.target


def _route_transcript(report: Report, walk: Walk) -> list[str]:
    if walk.route is None or walk.route.address is None:
        return []
    mx = report.mx.get(walk.route.host)
    if mx is None:
        return []
    session = mx.sessions.get((walk.route.address, walk.route.port or 0))
    if session is None:
        return []
    return [
        f"{line.t_ms:8.1f} ms {line.dir:>3}: {visible(line.text)}"
        for line in session.transcript[:60]
    ]


# --------------------------------------------------------------------------- saving


def export_dir() -> Path:
    """Where exports go: $MXLENS_EXPORT_DIR, else $XDG_STATE_HOME/mxlens, else
    ~/.local/state/mxlens (the same place as the UI's firewall list)."""
    explicit = os.environ.get("MXLENS_EXPORT_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "mxlens"


def file_stem(target: str) -> str:
    """A file-name-safe form of a domain (or whatever the user typed)."""
    return re.sub(r"[^a-z0-9.-]+", "_", target.lower())[:100] or "mxlens"


def ticket_path(target: str, fmt: Format, directory: Path | None = None) -> Path:
    """A fresh file name for a ticket report of target (its canonical form)."""
    name = file_stem(canonical(target) or target)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return (directory or export_dir()) / f"ticket-{name}-{stamp}.{'md' if fmt == 'md' else 'txt'}"


def render(
    report: Report,
    fmt: Format,
    walk: Walk | None = None,
    connector: ConnectorResult | None = None,
    changes: RunDiff | None = None,
) -> str:
    return (
        ticket_markdown(report, walk, connector, changes)
        if fmt == "md"
        else ticket_text(report, walk, connector, changes)
    )


def save_ticket(text: str, path: Path) -> Path:
    """Write a ticket report; OSError propagates for the caller to report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")
    return path
