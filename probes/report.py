"""Collect a diagnosis' events into a report: the JSON document and the text report.

The JSON follows docs/cli.md (`schema: mxlens/1`); network text stays exactly as received.
The text report is for terminals and tickets: every network string goes through
`safetext.visible()` so a hostile banner cannot drive the terminal.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from probes.model.events import (
    AddressesResolved,
    ChainReceived,
    ChainValidated,
    DaneChecked,
    DiagnosisFinished,
    DnsQuery,
    EndpointChecked,
    Event,
    Finding,
    FindingRaised,
    GradingSettled,
    MtaStsChecked,
    MxResolved,
    PtrResolved,
    SessionFinished,
    SessionStarted,
    Severity,
    SideProbeChecked,
    TlsNegotiated,
    TlsRptChecked,
    TlsVersionsProbed,
    TranscriptLine,
    Waiting,
    Where,
)
from probes.model.findings import EXPIRES_SOON, SEVERITY_ORDER, exit_code, sort_findings
from probes.model.options import Options
from probes.model.safetext import visible
from probes.model.version import mxlens_version

SCHEMA = "mxlens/1"

# What the transcript view lists for one MX address, in the order it arrived.
DialogueEvent = (
    SessionStarted | TranscriptLine | TlsNegotiated | SessionFinished | TlsVersionsProbed
)
_DIALOGUE = (SessionStarted, TranscriptLine, TlsNegotiated, SessionFinished, TlsVersionsProbed)

# The one-line verdict of a finished check, by exit code (text report, ticket headline).
VERDICT_TEXT: dict[int, str] = {
    0: "OK: no problems found",
    1: "WARNING: mail flows, with warnings",
    2: "ERROR: mail over this route fails",
}


def versions_text(accepted: tuple[tuple[str, bool | None], ...]) -> str:
    """TlsVersionsProbed.accepted as "TLSv1:no TLSv1.2:yes ..." (? = could not test)."""
    return " ".join(
        f"{version}:{'yes' if ok else ('no' if ok is False else '?')}" for version, ok in accepted
    )


@dataclass
class SessionReport:
    address: str
    port: int
    transcript: list[TranscriptLine] = field(default_factory=list)
    starttls: bool | None = None
    outcome: str | None = None
    throttled: bool = False
    connections: int = 0
    tls: TlsNegotiated | None = None
    chain: ChainReceived | None = None
    validation: ChainValidated | None = None
    versions: TlsVersionsProbed | None = None
    endpoints: list[EndpointChecked] = field(default_factory=list)
    dane: DaneChecked | None = None
    side_probes: list[SideProbeChecked] = field(default_factory=list)
    # The side probes' own transcripts, by purpose (the main one is `transcript`).
    side_transcripts: dict[str, list[TranscriptLine]] = field(default_factory=dict)


@dataclass
class MxReport:
    host: str
    preference: int
    addresses: list[str] = field(default_factory=list)
    cname: str | None = None
    ptr: dict[str, PtrResolved] = field(default_factory=dict)
    sessions: dict[tuple[str, int], SessionReport] = field(default_factory=dict)


class Report:
    """Everything a diagnosis said, in a shape both renderers use. Feed it every event."""

    def __init__(self, target: str, options: Options) -> None:
        self.target = target
        self.options = options
        self.target_ascii: str | None = None
        self.mx: dict[str, MxReport] = {}
        self.null_mx = False
        self.implicit_mx = False
        self.mx_overridden = False  # --mx: the hosts were given, no MX lookup was made
        self.dns: list[DnsQuery] = []
        self.mtasts: MtaStsChecked | None = None
        self.tlsrpt: TlsRptChecked | None = None
        self.findings: list[Finding] = []  # as graded now (the run's, or a connector's)
        self.run_findings: list[Finding] | None = None  # the run's own, once regraded
        self.finished: DiagnosisFinished | None = None
        self.grading: GradingSettled | None = None  # the context the findings were graded in
        self._ptr: dict[str, PtrResolved] = {}
        # Per (MX host, address), every port and purpose together, as the transcript shows it.
        self._dialogues: dict[tuple[str, str], list[DialogueEvent]] = {}
        self._waiting: dict[tuple[str, str], str] = {}  # what its main session awaits now
        self._open_main: dict[tuple[str, str], Where] = {}  # main sessions not finished yet
        self.mx_resolved: MxResolved | None = None  # the MX answer as the engine gave it
        self.resolved: dict[str, AddressesResolved] = {}  # per MX host, once looked up
        self.dane_of: dict[str, DaneChecked] = {}  # per MX host: its TLSA lookup

    # ------------------------------------------------------------------ collecting

    def _mx(self, host: str) -> MxReport:
        if host not in self.mx:
            self.mx[host] = MxReport(host, 0)
        return self.mx[host]

    def _session(self, where: Where) -> SessionReport:
        mx = self._mx(where.host)
        key = (where.address or "", where.port or 0)
        if key not in mx.sessions:
            mx.sessions[key] = SessionReport(where.address or "", where.port or 0)
        return mx.sessions[key]

    def add(self, event: Event) -> None:
        self._add_dialogue(event)
        if isinstance(event, DnsQuery):
            self.dns.append(event)
        elif isinstance(event, MxResolved):
            self.mx_resolved = event
            self.target_ascii = event.domain_ascii
            self.null_mx = event.null_mx
            self.implicit_mx = event.implicit
            self.mx_overridden = event.overridden
            for host in event.hosts:
                self._mx(host.host).preference = host.preference
        elif isinstance(event, AddressesResolved):
            self.resolved[event.host] = event
            mx = self._mx(event.host)
            mx.addresses = list(event.addresses)
            mx.cname = event.cname
        elif isinstance(event, PtrResolved):
            self._ptr[event.address] = event
            for mx in self.mx.values():
                if event.address in mx.addresses:
                    mx.ptr[event.address] = event
        elif isinstance(event, TranscriptLine):
            session = self._session(event.where)
            if event.purpose == "main":
                session.transcript.append(event)
            else:
                session.side_transcripts.setdefault(event.purpose, []).append(event)
        elif isinstance(event, SideProbeChecked):
            self._session(event.where).side_probes.append(event)
        elif isinstance(event, SessionFinished):
            session = self._session(event.where)
            session.connections += event.connections
            if event.purpose == "main":
                session.starttls = event.starttls
                session.outcome = event.outcome
                session.throttled = event.throttled
        elif isinstance(event, TlsNegotiated):
            self._session(event.where).tls = event
        elif isinstance(event, ChainReceived):
            self._session(event.where).chain = event
        elif isinstance(event, ChainValidated):
            self._session(event.where).validation = event
        elif isinstance(event, TlsVersionsProbed):
            self._session(event.where).versions = event
        elif isinstance(event, EndpointChecked):
            if event.where is not None and event.where.address is not None:
                session = self._session(event.where)
                if event not in session.endpoints:
                    session.endpoints.append(event)
                return
            # Without a session (older event sources): every session whose chain has the cert.
            for mx in self.mx.values():
                for session in mx.sessions.values():
                    certs = session.validation.path if session.validation else ()
                    if any(link.cert.sha256 == event.for_cert for link in certs):
                        if event not in session.endpoints:
                            session.endpoints.append(event)
        elif isinstance(event, DaneChecked):
            self.dane_of[event.where.host] = event
            if event.where.address is not None:
                self._session(event.where).dane = event
        elif isinstance(event, MtaStsChecked):
            self.mtasts = event
        elif isinstance(event, TlsRptChecked):
            self.tlsrpt = event
        elif isinstance(event, FindingRaised):
            self.findings.append(event.finding)
        elif isinstance(event, GradingSettled):
            self.grading = event
        elif isinstance(event, DiagnosisFinished):
            self.finished = event

    def _add_dialogue(self, event: Event) -> None:
        where = getattr(event, "where", None)
        if where is None or where.address is None:
            return
        key = (where.host, where.address)
        if isinstance(event, Waiting):
            if event.purpose == "main":
                self._waiting[key] = event.what
            return
        if not isinstance(event, _DIALOGUE):
            return
        self._dialogues.setdefault(key, []).append(event)
        main = getattr(event, "purpose", "main") == "main"
        if main and isinstance(event, (SessionStarted, TranscriptLine)):
            self._open_main[key] = where
        elif main and isinstance(event, SessionFinished):
            self._open_main.pop(key, None)

    def exit_code(self) -> int:
        return exit_code(self.findings)

    # ------------------------------------------------------------------ what the views ask
    # The UI's panes show these answers instead of re-deriving them from the events, so the
    # screen, the JSON, the text report and the ticket cannot disagree.

    def regrade(self, findings: Iterable[Finding] | None) -> None:
        """Judge the report for another sender: `findings` as a connector profile graded
        them (`connectors.judge`), or None for the run's own grading again. The exit code,
        the JSON, the text and every view follow."""
        if self.run_findings is None:
            self.run_findings = list(self.findings)
        self.findings = list(self.run_findings if findings is None else findings)

    def session_at(self, host: str, address: str) -> SessionReport | None:
        """The main session of one MX address (the first port probed)."""
        mx = self.mx.get(host)
        if mx is None:
            return None
        return next((s for (a, _), s in mx.sessions.items() if a == address), None)

    def dialogue(self, host: str, address: str) -> list[DialogueEvent]:
        """What was said with one MX address so far (SMTP lines, handshake, side probes),
        in the order it arrived."""
        return self._dialogues.get((host, address), [])

    def waiting_for(self, host: str, address: str) -> str | None:
        """What the address's main session last said it waits for (a Waiting event)."""
        return self._waiting.get((host, address))

    def ptr_of(self, address: str) -> PtrResolved | None:
        return self._ptr.get(address)

    def session_state(self, host: str, address: str) -> str | None:
        """The main session's progress: "running", "ok", "stopped", or None (not started)."""
        if (host, address) in self._open_main:
            return "running"
        session = self.session_at(host, address)
        if session is None or session.outcome is None:
            return None
        return "ok" if session.outcome == "ok" else "stopped"

    def open_sessions(self) -> dict[tuple[str, str], Where]:
        """The main sessions started and not finished: cut off if the run stops now."""
        return dict(self._open_main)

    def findings_for(self, host: str, address: str | None = None) -> list[Finding]:
        """Worst first: the findings about one address and about its host as a whole (with
        address None: every finding about the host)."""
        return sort_findings(
            [
                f
                for f in self.findings
                if f.where.host == host and (address is None or f.where.address in (None, address))
            ]
        )

    def findings_for_cert(self, host: str, address: str, index: int) -> list[Finding]:
        """The findings about certificate `index` (0 = leaf) of that address's chain: those
        whose evidence names it, and the certificate findings that name none (the leaf)."""
        out = []
        for f in self.findings_for(host, address):
            if f.where.address != address:
                continue  # about the host (a TLSA lookup), not this address's chain
            named = [e.index for e in f.evidence if e.kind == "cert"]
            if named:
                if index in named:
                    out.append(f)
            elif index == 0 and f.id.startswith(("cert.", "dane.")):
                out.append(f)
        return out

    def address_status(self, host: str, address: str) -> Severity | None:
        """The worst severity about one address (its host's findings count too); None when
        nothing was found about it. A pool.* finding is about the pool, not the address:
        in a pool of two where one has an expired certificate, the healthy one "differs"
        too, and it must not look broken for that."""
        found = [f for f in self.findings_for(host, address) if not f.id.startswith("pool.")]
        return found[0].severity if found else None

    def mtasts_covers(self, host: str) -> bool | None:
        """Whether the domain's MTA-STS policy lists a pattern matching MX `host` (the rule
        mtasts.mx_not_covered is raised by); None without a policy."""
        if self.mtasts is None or not self.mtasts.mode:
            return None
        from probes.model.names import mx_matches  # idna: not needed for the UI's first paint

        return any(mx_matches(p, host) for p in self.mtasts.mx_patterns)

    def endpoints_for(self, host: str, address: str) -> list[EndpointChecked]:
        """The CA endpoints of that address's chain, one per URL: the latest result."""
        session = self.session_at(host, address)
        return _latest(session.endpoints) if session is not None else []

    def all_endpoints(self) -> list[EndpointChecked]:
        """Every CA endpoint checked, for every MX, one per URL."""
        return _latest(
            [e for mx in self.mx_in_order() for s in mx.sessions.values() for e in s.endpoints]
        )

    def ca_endpoint_urls(self) -> list[str]:
        """Every OCSP, CRL and caIssuers URL of the chains seen, checked or not: the one list
        the JSON's `ca_endpoint_hosts`, the text report and the firewall list come from."""
        urls: list[str] = []
        for mx in self.mx.values():
            for s in mx.sessions.values():
                urls.extend(e.url for e in s.endpoints)
                certs = [link.cert for link in s.validation.path] if s.validation else []
                if not certs and s.chain is not None:
                    certs = list(s.chain.certs)
                for cert in certs:
                    urls.extend((*cert.ocsp_urls, *cert.crl_urls, *cert.ca_issuers_urls))
        return list(dict.fromkeys(urls))

    def firewall_list(self) -> list[str]:
        """Unique "host:port" entries, sorted, that a verifying mail server must reach."""
        return sorted({host_port(url) for url in self.ca_endpoint_urls()} - {""})

    def mx_in_order(self) -> list[MxReport]:
        return sorted(self.mx.values(), key=lambda m: m.preference)

    # ------------------------------------------------------------------ JSON

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "version": mxlens_version(),
            "target": self.target,
            "target_ascii": self.target_ascii,
            "policy": self.options.policy,
            "null_mx": self.null_mx,
            "implicit_mx": self.implicit_mx,
            "mx": [self._mx_json(mx) for mx in self.mx_in_order()],
            "policies": {
                "mta_sts": _plain(self.mtasts),
                "tls_rpt": _plain(self.tlsrpt),
            },
            "dns": [_plain(q) for q in self.dns],
            "findings": [_finding_json(f) for f in sort_findings(self.findings)],
            "providers": self.providers(),
            "skipped_checks": [
                {"check": check, "text": text, "why": why} for check, text, why in self.skipped()
            ],
            "exit_code": self.exit_code(),
            "elapsed_ms": self.finished.elapsed_ms if self.finished else None,
        }

    def _mx_json(self, mx: MxReport) -> dict[str, Any]:
        return {
            "host": mx.host,
            "preference": mx.preference,
            "cname": mx.cname,
            "addresses": mx.addresses,
            "ptr": {a: list(p.names) for a, p in mx.ptr.items()},
            "sessions": [self._session_json(s) for s in mx.sessions.values()],
        }

    @staticmethod
    def _session_json(s: SessionReport) -> dict[str, Any]:
        tls = None
        if s.tls is not None:
            tls = {
                "version": s.tls.version,
                "cipher": s.tls.cipher,
                "forward_secrecy": s.tls.forward_secrecy,
                "group": s.tls.group,
                "bits": s.tls.bits,
                "handshake": list(s.tls.handshake),
            }
        chain = []
        if s.chain is not None:
            chain = [_cert_json(c, "sent") for c in s.chain.certs]
        validation = None
        if s.validation is not None:
            validation = {
                "trusted": s.validation.trusted,
                "error": s.validation.error,
                "trust_store": s.validation.trust_store,
                "names_checked": list(s.validation.names_checked),
                "name_matches": s.validation.name_matches,
                "path": [_cert_json(link.cert, link.source) for link in s.validation.path],
            }
        return {
            "address": s.address,
            "port": s.port,
            "outcome": s.outcome,
            "throttled": s.throttled,
            "connections": s.connections,
            "transcript": [
                {"t_ms": line.t_ms, "dir": line.dir, "text": line.text} for line in s.transcript
            ],
            "starttls": s.starttls,
            "tls": tls,
            "tls_versions": dict(s.versions.accepted) if s.versions else None,
            "chain": chain,
            "validation": validation,
            "endpoints": [_endpoint_json(e) for e in s.endpoints],
            "dane": _plain(s.dane),
            "side_probes": [_side_probe_json(p, s) for p in s.side_probes],
        }

    def skipped(self) -> list[tuple[str, str, str]]:
        """(check, what it is, why) for the side-probe checks this run did not make."""
        from probes.checks.side_probes import CHECK_TEXT, SIDE_CHECKS

        if self.options.quick:
            why = "--quick"
        elif not self.options.extra_probes:
            why = "--no-extra-probes"
        else:
            return []
        return [(check, CHECK_TEXT[check], why) for check in SIDE_CHECKS]

    # ------------------------------------------------------------------ text

    def to_text(self, width: int = 80) -> str:
        """The text report; long sentences wrap at `width` columns under their own start."""
        out: list[str] = []
        name = (
            self.target
            if self.target_ascii in (None, self.target)
            else f"{self.target} ({self.target_ascii})"
        )
        out.append(f"mxlens check {visible(name)}  policy: {self.options.policy}")
        out.append(VERDICT_TEXT[self.exit_code()])
        out.append("")
        findings = sort_findings(self.findings)
        shown = [f for f in findings if f.severity != "ok"]
        if shown:
            out.append("Findings (worst first):")
            for f in shown:
                out.append(f"  {f.severity.upper():7} {f.id:28} {visible(str(f.where))}")
                out.extend(_wrap("          ", visible(f.summary), width))
                if f.severity in ("error", "warning"):
                    out.extend(_wrap("          why: ", visible(f.detail), width))
                    if f.fix:
                        out.extend(_wrap("          fix: ", visible(f.fix), width))
            out.append("")
        if self.mtasts or self.tlsrpt:
            out.append("Domain policies:")
            if self.mtasts is not None:
                if self.mtasts.record is None:
                    state = (
                        f"could not check ({self.mtasts.error})"
                        if self.mtasts.error
                        else "not published"
                    )
                else:
                    state = self.mtasts.mode or f"error: {self.mtasts.error}"
                out.append(
                    f"  MTA-STS: {visible(state)}"
                    + (
                        f"  mx: {visible(' '.join(self.mtasts.mx_patterns))}"
                        if self.mtasts.mx_patterns
                        else ""
                    )
                )
            if self.tlsrpt is not None:
                if self.tlsrpt.record:
                    rpt = self.tlsrpt.record
                elif self.tlsrpt.error:
                    rpt = f"could not check ({self.tlsrpt.error})"
                else:
                    rpt = "not published"
                out.append(f"  TLS-RPT: {visible(rpt)}")
            out.append("")
        skipped = self.skipped()
        if skipped:
            out.append(
                f"Skipped ({skipped[0][2]}): " + ", ".join(text for _, text, _ in skipped) + "."
            )
            out.append("")
        from probes.interpret.providers import summary_text

        out.extend(summary_text(self.providers()))
        for mx in self._mx_worst_first():
            out.extend(self._mx_text(mx))
        if self.finished is not None:
            out.append(f"Done in {self.finished.elapsed_ms / 1000:.1f} s.")
        return "\n".join(out) + "\n"

    def providers(self) -> dict[str, Any]:
        """Which provider each MX belongs to, and the CA endpoint hosts (OCSP, CRL, caIssuers)
        of the chains actually seen, which a verifying mail server must reach."""
        from probes.interpret.providers import summarise

        return summarise([mx.host for mx in self.mx_in_order()], self.ca_endpoint_urls())

    def _mx_worst_first(self) -> list[MxReport]:
        def rank(mx: MxReport) -> tuple[int, int]:
            sevs = [SEVERITY_ORDER[f.severity] for f in self.findings if f.where.host == mx.host]
            return (min(sevs) if sevs else 9, mx.preference)

        return sorted(self.mx.values(), key=rank)

    def _mx_text(self, mx: MxReport) -> list[str]:
        out = [
            f"MX {mx.preference} {visible(mx.host)}"
            + (f" (CNAME {visible(mx.cname)})" if mx.cname else "")
        ]
        if not mx.addresses:
            out.append("  no addresses")
        for addr in mx.addresses:
            ptr = mx.ptr.get(addr)
            ptr_text = ", ".join(ptr.names) if ptr and ptr.names else "no PTR"
            out.append(f"  {addr}  PTR {visible(ptr_text)}")
        for s in mx.sessions.values():
            out.append(f"  session {s.address} port {s.port}: {s.outcome or 'not finished'}")
            if s.tls is not None:
                fs = "forward secrecy" if s.tls.forward_secrecy else "NO forward secrecy"
                group = f", {s.tls.group}" if s.tls.group else ""
                out.append(f"    TLS: {s.tls.version} {s.tls.cipher} ({fs}{group})")
            if s.versions is not None:
                out.append(f"    versions: {versions_text(s.versions.accepted)}")
            if s.side_probes:
                out.append(
                    "    side probes: " + "; ".join(f"{p.check} {p.result}" for p in s.side_probes)
                )
            if s.validation is not None:
                out.append(
                    f"    chain: {visible(trust_summary(s.validation))} "
                    f"[{visible(s.validation.trust_store)}]"
                )
                for i, link in enumerate(s.validation.path):
                    out.append(
                        f"      {i} {link.source:5} {visible(link.cert.subject)}  until {link.cert.not_after}"
                    )
            elif s.chain is not None:
                for i, cert in enumerate(s.chain.certs):
                    out.append(f"      {i} sent  {visible(cert.subject)}  until {cert.not_after}")
            for e in s.endpoints:
                state = "ok" if e.ok else f"FAIL {visible(e.error or '')}"
                ms = f" {e.ms:.0f} ms" if e.ms is not None else ""
                out.append(f"    {e.kind:10} {visible(e.url)}  {state}{ms}")
            if s.transcript:
                out.append("    transcript:")
                for line in s.transcript[:40]:
                    out.append(f"      {line.t_ms:8.1f} ms {line.dir:>3}: {visible(line.text)}")
                if len(s.transcript) > 40:
                    out.append(f"      ... {len(s.transcript) - 40} more lines (see --json)")
        out.append("")
        return out


def expiry(not_after: str, now: datetime | None = None) -> tuple[str, int | None]:
    """A certificate's date state as the engine grades it: ("expired" | "soon" | "ok",
    whole days left), or ("unknown", None) for an unreadable date. "soon" is less than
    EXPIRES_SOON left, the rule cert.expires_soon is raised by."""
    try:
        when = datetime.fromisoformat(not_after.replace("Z", "+00:00"))
    except ValueError:
        return "unknown", None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    left = when - (now or datetime.now(timezone.utc))
    days = left.days  # whole days, rounded down (-1 for a few hours ago)
    if left.total_seconds() < 0:
        return "expired", days
    return ("soon" if left < EXPIRES_SOON else "ok"), days


def _wrap(lead: str, text: str, width: int) -> list[str]:
    """`lead` + text wrapped at width, the next lines indented to where the text began;
    words are never cut (a long URL stays whole on its own line)."""
    lines = textwrap.wrap(
        text,
        max(width - len(lead), 20),
        break_long_words=False,
        break_on_hyphens=False,
    ) or [""]
    return [(lead if i == 0 else " " * len(lead)) + line for i, line in enumerate(lines)]


def _latest(endpoints: list[EndpointChecked]) -> list[EndpointChecked]:
    """One result per URL, the latest, in the order first seen (a URL in two certificates
    or two sessions' chains is one row and one firewall entry, not two)."""
    out: dict[str, EndpointChecked] = {}
    for e in endpoints:
        out[e.url] = e  # a dict keeps the first position and takes the new value
    return list(out.values())


def host_port(url: str) -> str:
    """ "host:port" a firewall must allow for url (80 for http, 443 for https by default);
    "" for text that is not a URL with a host (a hostile certificate can carry anything)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ""
    name = parts.hostname or ""
    if not name:
        return ""
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    if ":" in name:  # an IPv6 literal
        name = f"[{name}]"
    return f"{name}:{port}"


def trust_summary(validation: ChainValidated) -> str:
    """One phrase on the chain's trust, the same in the report, the walk and the UI."""
    if validation.trusted:
        return "trusted"
    if any(link.source == "aia" for link in validation.path):
        # A path exists, but only with a certificate the server did not send.
        return "NOT trusted as sent: complete only via AIA"
    if validation.error:
        return f"NOT trusted: {validation.error}"
    return "NOT trusted: no path to a trusted root"


def _endpoint_json(e: EndpointChecked) -> dict[str, Any]:
    return {
        "kind": e.kind,
        "url": e.url,
        "host": e.host,
        "ok": e.ok,
        "status": e.status,
        "ms": e.ms,
        "error": e.error,
        "detail": e.detail,
        "cert_status": e.cert_status,
        "for_cert": e.for_cert,
    }


def _cert_json(cert: Any, source: str) -> dict[str, Any]:
    data = {k: v for k, v in asdict(cert).items() if k != "der"}
    for key, value in data.items():
        if isinstance(value, tuple):
            data[key] = list(value)
    data["source"] = source
    return data


def _side_probe_json(probe: SideProbeChecked, session: SessionReport) -> dict[str, Any]:
    lines = (
        session.transcript
        if probe.purpose == "main"
        else session.side_transcripts.get(probe.purpose, [])
    )
    return {
        "check": probe.check,
        "result": probe.result,
        "reason": probe.reason,
        "purpose": probe.purpose,
        "ms": probe.ms,
        "evidence": list(probe.evidence),
        "transcript": [{"t_ms": x.t_ms, "dir": x.dir, "text": x.text} for x in lines],
    }


def _finding_json(f: Finding) -> dict[str, Any]:
    return {
        "id": f.id,
        "severity": f.severity,
        "where": str(f.where),
        "host": f.where.host,
        "address": f.where.address,
        "port": f.where.port,
        "summary": f.summary,
        "detail": f.detail,
        "fix": f.fix,
        "evidence": [str(e) for e in f.evidence],
    }


def _plain(obj: Any) -> Any:
    """A dataclass as JSON-ready data (tuples to lists, bytes dropped)."""
    if obj is None:
        return None
    data = asdict(obj)

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if not isinstance(v, bytes)}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return clean(data)


def json_text(doc: Any) -> str:
    """A JSON document as mxlens prints it: indented, UTF-8 kept readable, but every control,
    format or bidi character of network text written as \\uXXXX (a terminal acts on raw C1
    controls when a user `cat`s the file). Ends with a newline."""
    import json

    from probes.model.safetext import json_escape_hidden

    return json_escape_hidden(json.dumps(doc, indent=2, ensure_ascii=False)) + "\n"
