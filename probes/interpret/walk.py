"""The guided walk-through: a finished report retold as the steps a sending server takes.

A helpdesk engineer starts from "mail to our partner stopped": the walk answers "where does
it stop?". `build_walk(report)` follows the route a sender would take (the first MX address,
in preference order, that answers with a 220 greeting) through the steps of docs/cli.md,
gives each step pass / fail / skip, the finding ids that fail it, short evidence, and one
sentence on why it matters and what to do.

A step fails only on findings that are errors under the report's sender policy, plus three
facts no sender gets past whatever the policy: no TCP connection, no 220 greeting, EHLO
refused. Warnings and infos touching a step are kept as its `notes`, so "first_concern"
(the first step that fails or has a note) tells where a milder problem sits.

Strings in steps (evidence, why, fix) are kept as received; renderers make them visible.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from probes.model.events import CertInfo, Evidence, Finding, Where
from probes.model.findings import SEVERITY_ORDER
from probes.model.wording import count
from probes.report import MxReport, Report, SessionReport, trust_summary, versions_text

StepStatus = Literal["pass", "fail", "skip"]

STEPS: tuple[str, ...] = (
    "resolve_mx",
    "resolve_address",
    "connect",
    "greeting",
    "ehlo",
    "starttls_offered",
    "starttls_accepted",
    "handshake",
    "chain_trusted",
    "name_match",
    "revocation",
    "mta_sts",
    "dane",
)
# Not a contract step: findings about the domain as a whole (TLS-RPT, the MX pool).
VERDICT = "verdict"

TITLES: dict[str, str] = {
    "resolve_mx": "Find the MX records",
    "resolve_address": "Resolve the MX host's addresses",
    "connect": "Open a TCP connection",
    "greeting": "Receive the 220 greeting",
    "ehlo": "Say EHLO",
    "starttls_offered": "See STARTTLS offered",
    "starttls_accepted": "Start TLS (STARTTLS answered 220)",
    "handshake": "Complete the TLS handshake",
    "chain_trusted": "Trust the certificate chain",
    "name_match": "Match the certificate name",
    "revocation": "Check revocation (OCSP / CRL)",
    "mta_sts": "Apply the domain's MTA-STS policy",
    "dane": "Apply the MX host's DANE (TLSA) records",
    VERDICT: "Verdict",
}

# Every catalog id -> the step it belongs to. A few ids depend on where they were seen; see
# `step_of`. tests/test_walk.py checks that every id of probes/data/findings.json is here.
STEP_OF: dict[str, str] = {
    "dns.nxdomain": "resolve_mx",
    "dns.no_mx": "resolve_mx",
    "dns.null_mx": "resolve_mx",
    "dns.mx_is_cname": "resolve_mx",
    "dns.mx_is_ip": "resolve_mx",
    "dns.mx_not_probed": "resolve_mx",
    "dns.lookup_failed": "resolve_mx",  # resolve_address when it was an MX host's lookup
    "dns.mx_unresolvable": "resolve_address",
    "dns.ptr_missing": "resolve_address",
    "dns.ptr_mismatch": "resolve_address",
    "smtp.connect_refused": "connect",
    "smtp.connect_timeout": "connect",
    "smtp.not_tested_from_here": "connect",
    "check.deadline_reached": "connect",  # the probes still running are stopped mid-session
    "smtp.greeting_rejected": "greeting",
    "smtp.rate_limited": "greeting",
    "smtp.timeout": "greeting",  # the step where the session stopped
    "smtp.ehlo_rejected": "ehlo",
    "smtp.malformed_reply": "ehlo",  # the command the malformed reply answered
    "tls.starttls_not_offered": "starttls_offered",
    "tls.starttls_refused": "starttls_accepted",
    "tls.starttls_still_offered": "starttls_accepted",
    "tls.plaintext_injection": "starttls_accepted",
    "tls.handshake_failed": "handshake",
    "tls.legacy_only": "handshake",
    "tls.legacy_accepted": "handshake",
    "tls.no_tls13": "handshake",
    "tls.no_forward_secrecy": "handshake",
    "tls.weak_cipher": "handshake",
    "tls.non_fs_accepted": "handshake",
    "tls.weak_suite_accepted": "handshake",
    "cert.untrusted": "chain_trusted",
    "cert.self_signed": "chain_trusted",
    "cert.unparseable": "chain_trusted",
    "cert.incomplete_chain": "chain_trusted",
    "cert.expired": "chain_trusted",
    "cert.not_yet_valid": "chain_trusted",
    "cert.expires_soon": "chain_trusted",
    "cert.weak_key": "chain_trusted",
    "cert.weak_signature": "chain_trusted",
    "cert.not_server_auth": "chain_trusted",
    # Raised by `mxlens listen` / `mxlens cert` about our own side, never by a check; mapped
    # to the step of the same name so every catalog id has one.
    "cert.not_client_auth": "chain_trusted",
    "cert.key_mismatch": "handshake",
    "cert.no_key": VERDICT,
    "listen.no_tls": "starttls_accepted",
    "listen.handshake_failed": "handshake",
    "listen.no_client_cert": "chain_trusted",
    "listen.sender_name_mismatch": "name_match",
    "listen.not_accepted_domain": "name_match",
    "cert.name_mismatch": "name_match",
    "cert.expected_name_mismatch": "name_match",
    "cert.no_san": "name_match",
    "cert.revoked": "revocation",
    "ca.ocsp_unreachable": "revocation",
    "ca.crl_unreachable": "revocation",
    "ca.issuer_unreachable": "revocation",
    "ca.ocsp_invalid": "revocation",
    "ca.endpoint_not_fetched": "revocation",
    "ca.crl_invalid": "revocation",
    "ca.no_revocation_info": "revocation",
    "ca.provider_root_missing": "chain_trusted",
    "ca.revocation_unavailable": "revocation",
    "mtasts.record_invalid": "mta_sts",
    "mtasts.fetch_failed": "mta_sts",
    "mtasts.policy_invalid": "mta_sts",
    "mtasts.webpki_invalid": "mta_sts",
    "mtasts.mx_not_covered": "mta_sts",
    "mtasts.testing": "mta_sts",
    "tlsrpt.missing": VERDICT,
    "tlsrpt.invalid": VERDICT,
    "dane.tlsa_mismatch": "dane",
    "dane.lookup_failed": "dane",
    "dane.unusable": "dane",
    "dane.required": "dane",
    "dane.insecure": "dane",
    "dane.dnssec_unsigned": "dane",
    "pool.inconsistent": VERDICT,
}

# The steps a session goes through in order; a failure blocks the ones after it.
_CHAIN = STEPS[:11]
# SessionFinished.outcome -> how far the main session got (the step it stopped at).
_OUTCOME_RANK = {
    "connect": 0,
    "greeting": 1,
    "ehlo": 2,
    "starttls": 3,
    "handshake": 4,
    "ehlo-tls": 5,
    "ok": 6,
}
_OUTCOME_STEP = {
    "connect": "connect",
    "greeting": "greeting",
    "ehlo": "ehlo",
    "starttls": "starttls_accepted",
    "handshake": "handshake",
    "ehlo-tls": "starttls_accepted",
}


@dataclass(frozen=True)
class WalkStep:
    """One step of the walk. `findings` fail it; `notes` touch it without failing it."""

    name: str
    status: StepStatus
    findings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()  # short strings, network text as received
    why: str = ""  # why this step breaks delivery (empty when it passes cleanly)
    fix: str = ""
    where: Where | None = None  # the place the evidence is about
    refs: tuple[str, ...] = ()  # evidence references ("transcript:3", "cert:0", "endpoint:URL")

    @property
    def title(self) -> str:
        return TITLES[self.name]

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "status": self.status,
            "findings": list(self.findings),
            "notes": list(self.notes),
            "title": self.title,
            "evidence": list(self.evidence),
            "why": self.why,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class Walk:
    target: str
    policy: str
    route: Where | None  # the MX address the walk follows (None: no MX to follow)
    steps: tuple[WalkStep, ...]
    verdict: str
    elsewhere: tuple[str, ...] = ()  # what differs on MX hosts/addresses off the route
    verdict_notes: tuple[str, ...] = ()  # ids about the domain as a whole (TLS-RPT, pool)
    # When the route fails: another MX address whose walk passes every step. Senders try the
    # next MX when one fails (RFC 5321 5.1; RFC 8461 and 7672 alike for policy failures), so
    # mail still arrives through it: late, or only through it.
    fallback: Where | None = None
    fallback_preference: int | None = None
    route_preference: int | None = None

    @property
    def delivers(self) -> bool:
        """Whether a sender gets the mail through at all (possibly only via the fallback)."""
        return self.first_failure is None or self.fallback is not None

    @property
    def first_failure(self) -> str | None:
        return next((s.name for s in self.steps if s.status == "fail"), None)

    @property
    def first_concern(self) -> str | None:
        """The first step that fails or carries a warning/info note."""
        return next((s.name for s in self.steps if s.status == "fail" or s.notes), None)

    def step(self, name: str) -> WalkStep:
        return next(s for s in self.steps if s.name == name)

    def to_json(self) -> dict[str, Any]:
        """The keys `check --walk --json` adds to the report (docs/cli.md)."""
        return {
            "walk": [s.to_json() for s in self.steps],
            "first_failure": self.first_failure,
            "first_concern": self.first_concern,
            "walk_route": None
            if self.route is None
            else {"host": self.route.host, "address": self.route.address, "port": self.route.port},
            "walk_verdict": self.verdict,
            "walk_elsewhere": list(self.elsewhere),
            "walk_delivers": self.delivers,
            "walk_fallback": None
            if self.fallback is None
            else {
                "host": self.fallback.host,
                "address": self.fallback.address,
                "port": self.fallback.port,
                "preference": self.fallback_preference,
            },
        }


# --------------------------------------------------------------------------- route


def leaf_cert(session: SessionReport | None) -> CertInfo | None:
    """The server certificate of a session: the validated path's leaf, else the first
    certificate sent."""
    if session is None:
        return None
    if session.validation is not None and session.validation.path:
        return session.validation.path[0].cert
    if session.chain is not None and session.chain.certs:
        return session.chain.certs[0]
    return None


def _answered(session: SessionReport) -> bool:
    return _OUTCOME_RANK.get(session.outcome or "connect", 0) >= 2


def choose_route(report: Report) -> tuple[MxReport | None, SessionReport | None]:
    """The MX host and session a sender would use: the first address in preference order
    that answers with 220; otherwise the first address tried; otherwise the first MX."""
    ordered = report.mx_in_order()
    first: tuple[MxReport | None, SessionReport | None] = (ordered[0] if ordered else None, None)
    found_first = False
    for mx in ordered:
        for address in mx.addresses:
            for (addr, _port), session in mx.sessions.items():
                if addr != address:
                    continue
                if not found_first:
                    first, found_first = (mx, session), True
                if _answered(session):
                    return mx, session
    if not found_first:
        # No session at all: the first MX that has addresses (so resolve_address can pass),
        # else the first MX (whose resolution failed).
        with_addr = next((m for m in ordered if m.addresses), None)
        return (with_addr or first[0]), None
    return first


def step_of(finding: Finding, report: Report) -> str:
    """The walk step a finding belongs to."""
    fid = finding.id
    if fid == "dns.lookup_failed":
        return (
            "resolve_address"
            if finding.where.host in report.mx and not report.implicit_mx
            else "resolve_mx"
        )
    if fid == "smtp.timeout":
        session = _session_at(report, finding.where)
        return _OUTCOME_STEP.get(session.outcome or "", "greeting") if session else "greeting"
    if fid == "smtp.malformed_reply":
        return _malformed_step(report, finding)
    return STEP_OF.get(fid, VERDICT)


def _session_at(report: Report, where: Where) -> SessionReport | None:
    mx = report.mx.get(where.host)
    if mx is None:
        return None
    for (addr, port), session in mx.sessions.items():
        if addr == (where.address or "") and (where.port is None or port == where.port):
            return session
    return None


def _malformed_step(report: Report, finding: Finding) -> str:
    session = _session_at(report, finding.where)
    index = _ref_index(finding.evidence, "transcript")
    if session is None or index is None:
        return "ehlo"
    command = ""
    for line in session.transcript[: index + 1]:
        if line.dir == "C":
            command = line.text.split(" ", 1)[0].upper()
    if not command:
        return "greeting"
    return "starttls_accepted" if command == "STARTTLS" else "ehlo"


def _ref_index(evidence: tuple[Evidence, ...], kind: str) -> int | None:
    return next((e.index for e in evidence if e.kind == kind), None)


# --------------------------------------------------------------------------- building


def build_walk(
    report: Report, findings: list[Finding] | None = None, *, policy: str | None = None
) -> Walk:
    """Retell `report` as the walk-through. `findings` replaces the report's own findings
    (a connector re-grades them without probing again), `policy` names what they were graded for.
    When the route fails, the other MX addresses that answer are walked too: the first whose
    walk passes is the fallback a sender ends up delivering through."""
    all_findings = list(report.findings if findings is None else findings)
    mx, session = choose_route(report)
    if mx is None or session is None or not _answered(session):
        return _with_verdict(_walk_route(report, all_findings, policy, mx, session))
    # Senders pick at random among MX of one preference: walk every answering address of the
    # route's preference (in name order, so the result does not depend on DNS answer order)
    # and follow one that fails, if any, so that the verdict shows where mail can stop.
    group = sorted(
        (
            (m, s)
            for m in report.mx_in_order()
            if m.preference == mx.preference
            for s in m.sessions.values()
            if _answered(s)
        ),
        key=lambda pair: (pair[0].host, pair[1].address, pair[1].port),
    )
    walks = [(m, _walk_route(report, all_findings, policy, m, s)) for m, s in group]
    failing = [(m, w) for m, w in walks if w.first_failure is not None]
    passing = [(m, w) for m, w in walks if w.first_failure is None]
    if not failing:
        return _with_verdict(passing[0][1])
    route_mx, walk = failing[0]
    if not passing:
        # Every address at this preference fails: a sender moves on to the next preference.
        for other in report.mx_in_order():
            if other.preference <= route_mx.preference:
                continue
            for other_session in other.sessions.values():
                if not _answered(other_session):
                    continue
                alt = _walk_route(report, all_findings, policy, other, other_session)
                if alt.first_failure is None:
                    passing = [(other, alt)]
                    break
            if passing:
                break
    if passing:
        good_mx, good = passing[0]
        walk = replace(
            walk,
            fallback=good.route,
            fallback_preference=good_mx.preference,
            route_preference=route_mx.preference,
        )
    return _with_verdict(walk)


def _walk_route(
    report: Report,
    all_findings: list[Finding],
    policy: str | None,
    mx: MxReport | None,
    session: SessionReport | None,
) -> Walk:
    """The walk along one route (an MX host and one of its sessions), verdict not yet said."""
    domain = (report.target_ascii or report.target).lower()
    route: Where | None = None
    if mx is not None:
        route = Where(mx.host, session.address, session.port) if session else Where(mx.host)

    on_route: list[Finding] = []
    elsewhere: list[Finding] = []
    for f in all_findings:
        if f.severity == "ok":
            continue
        if _applies(f, route, domain):
            on_route.append(f)
        else:
            elsewhere.append(f)

    by_step: dict[str, list[Finding]] = {}
    for f in on_route:
        by_step.setdefault(step_of(f, report), []).append(f)
    for fs in by_step.values():
        fs.sort(key=lambda f: (SEVERITY_ORDER[f.severity], f.id))

    ev = _Evidence(report, mx, session)
    steps: list[WalkStep] = []
    blocked_by: str | None = None
    for name in STEPS:
        fs = by_step.get(name, [])
        errors = [f for f in fs if f.severity == "error"]
        notes = [f for f in fs if f.severity != "error"]
        evidence, refs = ev.of(name)
        reached, fact_fail = ev.reached(name)
        if name in _CHAIN and blocked_by is not None:
            steps.append(
                _skip(name, f"not reached: step {blocked_by} failed", evidence, route, refs)
            )
            continue
        if name in ("mta_sts", "dane") and blocked_by in ("resolve_mx",):
            steps.append(
                _skip(name, "not reached: the domain has no usable MX", evidence, route, refs)
            )
            continue
        if errors or fact_fail:
            lead = errors[0] if errors else (notes[0] if notes else None)
            ids = [f.id for f in errors] or ([lead.id] if lead else [])
            why = lead.detail if lead else ev.fact_why(name)
            fix = lead.fix if lead else ""
            summaries = tuple(f.summary for f in (errors or notes)[:3])
            steps.append(
                WalkStep(
                    name,
                    "fail",
                    tuple(dict.fromkeys(ids)),
                    tuple(dict.fromkeys(f.id for f in notes if f.id not in ids)),
                    summaries + evidence,
                    why,
                    fix,
                    lead.where if lead else route,
                    tuple(map(str, lead.evidence)) if lead and lead.evidence else refs,
                )
            )
            if name in _CHAIN:
                blocked_by = name
            continue
        if not reached and not notes:
            steps.append(_skip(name, ev.skip_reason(name), evidence, route, refs))
            continue
        lead = notes[0] if notes else None
        steps.append(
            WalkStep(
                name,
                "pass",
                (),
                tuple(dict.fromkeys(f.id for f in notes)),
                tuple(f.summary for f in notes[:3]) + evidence,
                lead.detail if lead else "",
                lead.fix if lead else "",
                lead.where if lead else route,
                tuple(map(str, lead.evidence)) if lead and lead.evidence else refs,
            )
        )

    verdict_fs = by_step.get(VERDICT, [])
    return Walk(
        target=report.target,
        policy=policy or report.options.policy,
        route=route,
        steps=tuple(steps),
        verdict="",
        elsewhere=tuple(_elsewhere_lines(elsewhere, verdict_fs)),
        verdict_notes=tuple(dict.fromkeys(f.id for f in verdict_fs)),
    )


def _applies(f: Finding, route: Where | None, domain: str) -> bool:
    if route is None:
        return True
    host = f.where.host.lower()
    if host == domain and host != route.host:
        return True  # about the domain itself (MTA-STS, TLS-RPT, the MX lookup)
    if STEP_OF.get(f.id) == VERDICT:
        return True
    if host != route.host:
        return False
    if f.where.address is None or route.address is None:
        return True
    return f.where.address == route.address


def _elsewhere_lines(elsewhere: list[Finding], verdict_fs: list[Finding]) -> list[str]:
    out = [f.summary for f in verdict_fs if f.id == "pool.inconsistent"]
    for f in sorted(elsewhere, key=lambda f: (SEVERITY_ORDER[f.severity], str(f.where), f.id)):
        if f.severity in ("error", "warning"):
            out.append(f"{f.where}: {f.severity} {f.id}: {f.summary}")
    return list(dict.fromkeys(out))


def _skip(
    name: str, reason: str, evidence: tuple[str, ...], route: Where | None, refs: tuple[str, ...]
) -> WalkStep:
    return WalkStep(name, "skip", (), (), (reason,) + evidence, "", "", route, refs)


def _with_verdict(walk: Walk) -> Walk:
    failed = walk.first_failure
    where = f" via {walk.route}" if walk.route is not None else ""
    if failed is not None and walk.fallback is not None:
        step = walk.step(failed)
        reason = (step.evidence[0] if step.evidence else step.why).rstrip(".")
        text = (
            f"Mail to {walk.target} gets through, late or only via {walk.fallback}: "
            f"{walk.route} fails at step {failed} ({TITLES[failed]}): {reason}. "
            + fallback_sentence(walk)
        )
    elif failed is not None:
        step = walk.step(failed)
        reason = step.evidence[0] if step.evidence else step.why
        text = f"Mail to {walk.target}{where} fails at step {failed} ({TITLES[failed]}): {reason.rstrip('.')}."
    else:
        warned = [s.name for s in walk.steps if s.notes]
        if warned:
            text = f"Mail to {walk.target}{where} gets through under policy {walk.policy}; look at: {', '.join(warned)}."
        else:
            text = f"Mail to {walk.target}{where} gets through under policy {walk.policy}."
    if walk.elsewhere:
        text += f" Other MX differ ({count(len(walk.elsewhere), 'note')} below)."
    return replace(walk, verdict=text)


def fallback_sentence(walk: Walk) -> str:
    """What a sender does when the route fails and the fallback passes."""
    if walk.fallback is None or walk.route is None:
        return ""
    bad, good = walk.route.host, walk.fallback.host
    if bad == good:
        return (
            f"A sender that reaches {walk.route.address} first tries the next address, "
            f"{walk.fallback.address}, and delivers there, late."
        )
    if walk.fallback_preference == walk.route_preference:
        return (
            f"{bad} and {good} share preference {walk.route_preference}, so senders pick either: "
            f"mail through {good} goes straight through; a sender that picks {bad} fails there "
            f"and tries {good} next, so that mail arrives late."
        )
    return (
        f"A sender tries {bad} (preference {walk.route_preference}) first, fails there and "
        f"delivers through {good} (preference {walk.fallback_preference}), late."
    )


class _Evidence:
    """Short evidence strings and reachability for each step of one route."""

    def __init__(self, report: Report, mx: MxReport | None, session: SessionReport | None) -> None:
        self.report = report
        self.mx = mx
        self.session = session
        self.rank = _OUTCOME_RANK.get(session.outcome or "connect", 0) if session else -1
        self.implicit_tls = report.options.implicit_tls

    # -- reachability: (reached, failed as a plain fact)
    def reached(self, name: str) -> tuple[bool, bool]:
        r, s = self.report, self.session
        if name == "resolve_mx":
            if r.mx_overridden:
                return False, False  # no MX lookup was made: nothing passed
            return bool(r.mx) or r.null_mx, False
        if name == "resolve_address":
            return bool(self.mx and self.mx.addresses), False
        if s is None:
            return False, False
        if name == "connect":
            return True, s.outcome == "connect"
        if name == "greeting":
            return self.rank >= 1, s.outcome == "greeting"
        if name == "ehlo":
            return self.rank >= 2, s.outcome == "ehlo"
        if name == "starttls_offered":
            return (not self.implicit_tls) and self.rank >= 3, False
        if name == "starttls_accepted":
            return (not self.implicit_tls) and self.rank >= 3 and bool(s.starttls), False
        if name == "handshake":
            return s.tls is not None or self.rank >= 4, False
        if name in ("chain_trusted", "name_match"):
            return s.validation is not None or s.chain is not None, False
        if name == "revocation":
            return bool(s.endpoints) and r.options.endpoints, False
        if name == "mta_sts":
            return r.mtasts is not None and r.mtasts.record is not None, False
        if name == "dane":
            return s.dane is not None and bool(s.dane.records), False
        return False, False

    def skip_reason(self, name: str) -> str:
        if name == "resolve_mx" and self.report.mx_overridden:
            hosts = ", ".join(m.host for m in self.report.mx_in_order())
            return f"no MX lookup: --mx names the host ({hosts})"
        if name == "revocation" and not self.report.options.endpoints:
            return "skipped: --no-endpoints"
        if name == "mta_sts":
            sts = self.report.mtasts
            if sts is not None and sts.record is None and sts.error:
                return f"MTA-STS could not be checked ({sts.error}): a sender would retry later"
            return "no MTA-STS policy published: nothing to apply"
        if name == "dane":
            return "no TLSA records: DANE does not apply"
        if name in ("starttls_offered", "starttls_accepted") and self.implicit_tls:
            return "implicit TLS: no STARTTLS"
        if self.session is None and name not in ("resolve_mx", "resolve_address"):
            return "not reached: no SMTP session on this route"
        return "not reached"

    def fact_why(self, name: str) -> str:
        return {
            "connect": "No TCP connection: no sender can deliver over this address.",
            "greeting": "The server did not greet with 220: senders give up on this connection and retry later.",
            "ehlo": "EHLO was refused: the dialogue cannot go on.",
        }.get(name, "")

    # -- evidence
    def of(self, name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        r, mx, s = self.report, self.mx, self.session
        out: list[str] = []
        refs: list[str] = []
        if name == "resolve_mx" and r.mx_overridden:
            pass  # the skip reason names the given hosts; there are no MX records to show
        elif name == "resolve_mx":
            if r.null_mx:
                out.append("null MX (0 .)")
            elif r.implicit_mx:
                out.append("no MX: the domain's own A/AAAA is used")
            for m in r.mx_in_order()[:4]:
                out.append(f"MX {m.preference} {m.host}")
            if not r.mx and not r.null_mx:
                out.append("no MX host found")
        elif name == "resolve_address" and mx is not None:
            out.append(f"{mx.host} -> {', '.join(mx.addresses) or 'no address'}")
            if mx.cname:
                out.append(f"CNAME {mx.cname}")
            if s is not None and s.address in mx.ptr:
                ptr = mx.ptr[s.address]
                out.append(f"PTR {s.address}: {', '.join(ptr.names) or 'none'}")
        elif s is not None and name in (
            "connect",
            "greeting",
            "ehlo",
            "starttls_offered",
            "starttls_accepted",
        ):
            out.extend(self._transcript_evidence(name, refs))
        elif s is not None and name == "handshake":
            if s.tls is not None:
                fs = "forward secrecy" if s.tls.forward_secrecy else "no forward secrecy"
                out.append(f"{s.tls.version} {s.tls.cipher} ({fs})")
            if s.versions is not None:
                out.append(f"versions {versions_text(s.versions.accepted)}")
            self._transcript_dir("TLS", refs)
        elif s is not None and name == "chain_trusted":
            leaf = self._leaf()
            if leaf is not None:
                out.append(
                    f"leaf: {leaf.subject}, issuer {leaf.issuer}, valid {leaf.not_before} to {leaf.not_after}"
                )
                refs.append("cert:0")
            if s.validation is not None:
                v = s.validation
                out.append(f"chain {trust_summary(v)} ({v.trust_store})")
        elif s is not None and name == "name_match":
            leaf = self._leaf()
            if s.validation is not None and s.validation.names_checked:
                out.append(f"names checked: {', '.join(s.validation.names_checked)}")
            if r.options.expect_name:
                out.append(f"expected name: {r.options.expect_name}")
            if leaf is not None:
                out.append(
                    f"certificate SAN: {', '.join(leaf.san) or 'none'} (CN {leaf.common_name or 'none'})"
                )
                refs.append("cert:0")
        elif s is not None and name == "revocation":
            for e in s.endpoints[:6]:
                # An answer that says "revoked" is no "ok": show the status it gave.
                state = (e.cert_status or "ok") if e.ok else f"FAIL {e.error or ''}".strip()
                extra = ""
                out.append(f"{e.kind} {e.url}: {state}{extra}")
            if s.endpoints:
                refs.append(f"endpoint:{s.endpoints[0].url}")
        elif name == "mta_sts" and r.mtasts is not None:
            sts = r.mtasts
            if sts.record is None:
                out.append("no _mta-sts record")
            else:
                out.append(
                    f"mode {sts.mode or 'unknown'}; mx: {' '.join(sts.mx_patterns) or 'none'}"
                )
                if sts.error:
                    out.append(sts.error)
        elif s is not None and name == "dane" and s.dane is not None:
            d = s.dane
            out.append(
                f"TLSA {d.status}, {'DNSSEC-validated' if d.authenticated else 'not validated'}, {count(len(d.records), 'record')}"
            )
            if d.matched is not None:
                out.append(f"matched {d.matched}")
        return tuple(out), tuple(refs)

    def _leaf(self) -> CertInfo | None:
        return leaf_cert(self.session)

    def _transcript_dir(self, direction: str, refs: list[str]) -> None:
        s = self.session
        if s is None:
            return
        for i, line in enumerate(s.transcript):
            if line.dir == direction:
                refs.append(f"transcript:{i}")
                return

    def _transcript_evidence(self, name: str, refs: list[str]) -> list[str]:
        s = self.session
        assert s is not None
        lines = s.transcript
        if name == "connect":
            bad = next(((i, ln) for i, ln in enumerate(lines) if ln.dir == "!"), None)
            if s.outcome == "connect" and bad is not None:
                refs.append(f"transcript:{bad[0]}")
                return [f"! {bad[1].text}"]
            return [f"connected to {s.address} port {s.port}"] if s.outcome != "connect" else []
        if name == "greeting":
            first_c = next((i for i, ln in enumerate(lines) if ln.dir == "C"), len(lines))
            got = [(i, ln) for i, ln in enumerate(lines[:first_c]) if ln.dir in ("S", "!")]
            if got:
                refs.append(f"transcript:{got[0][0]}")
            return [f"{ln.dir}: {_short(ln.text)}" for _, ln in got[:2]]
        # The first EHLO and its reply; STARTTLS and its reply.
        cmd = "EHLO" if name in ("ehlo", "starttls_offered") else "STARTTLS"
        start = next(
            (i for i, ln in enumerate(lines) if ln.dir == "C" and ln.text.upper().startswith(cmd)),
            None,
        )
        if start is None:
            return []
        refs.append(f"transcript:{start}")
        reply = []
        for ln in lines[start + 1 :]:
            if ln.dir == "C":
                break
            if ln.dir in ("S", "!"):
                reply.append(ln.text)
        if name == "starttls_offered":
            if s.starttls is None:
                return []
            keywords = ", ".join(t[4:].split(" ", 1)[0] for t in reply[1:6])
            return [
                ("EHLO reply lists STARTTLS" if s.starttls else "EHLO reply does not list STARTTLS")
                + (f" ({keywords})" if keywords else "")
            ]
        out = [f"C: {_short(lines[start].text)}"]
        if reply:
            out.append(
                f"S: {_short(reply[0])}"
                + (f" (+{count(len(reply) - 1, 'line')})" if len(reply) > 1 else "")
            )
        return out


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- text


def walk_text(walk: Walk) -> str:
    """The walk as plain terminal text: PASS/FAIL/SKIP words. Network text made visible."""
    from probes.model.safetext import visible

    out = [f"Walk-through for {visible(walk.target)} (policy {walk.policy})"]
    if walk.route is not None:
        out.append(f"route: {visible(str(walk.route))}")
    for i, step in enumerate(walk.steps, 1):
        ids = " ".join(step.findings + step.notes)
        out.append(
            f"{i:2}. {step.status.upper():4} {step.name:18} {step.title}"
            + (f"  [{ids}]" if ids else "")
        )
        for item in step.evidence[:5]:
            out.append(f"          {visible(item)}")
        if step.status == "fail" or step.notes:
            if step.why:
                out.append(f"          why: {visible(step.why)}")
            if step.fix:
                out.append(f"          fix: {visible(step.fix)}")
    out.append(f"first failure: {walk.first_failure or 'none'}")
    if walk.fallback is not None:
        out.append(f"delivers via: {visible(str(walk.fallback))}")
    out.append(visible(walk.verdict))
    for line in walk.elsewhere:
        out.append(f"  elsewhere: {visible(line)}")
    if walk.verdict_notes:
        out.append(f"  domain notes: {' '.join(walk.verdict_notes)}")
    return "\n".join(out) + "\n"
