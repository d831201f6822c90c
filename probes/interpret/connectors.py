"""Connector simulation: judge a finished report as one specific sending (or receiving) setup.

"Mail stopped after we enabled forced TLS" is a question about one connector: would an Exchange
Online outbound connector with TlsSettings CertificateValidation deliver to this partner? Would
Postfix at `smtp_tls_security_level = verify`? Each profile below names a sender, the sender
policy of findings.md it maps to, and where it differs from that policy (which checks it skips
or adds), with a source note. `judge()` re-grades the report's findings for the profile without
probing again and retells the walk, so the UI can switch profiles instantly.

Inbound profiles (an Exchange Online inbound connector with RequireTls and
TlsSenderCertificateName) judge the certificate the partner presents. mxlens sees the
certificate the partner's MX presents, which is usually the one its sending hosts present too;
the verdict says so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from probes.interpret.walk import (
    STEPS,
    Walk,
    WalkStep,
    build_walk,
    fallback_sentence,
    leaf_cert,
)
from probes.model.errors import CheckError
from probes.model.events import CertInfo, Finding, Where
from probes.model.findings import GradeContext, grade, raise_finding
from probes.model.names import canonical, expected_name_matches, normalize
from probes.model.options import Policy
from probes.report import Report

NameCheck = Literal["none", "mx", "tlsdomain", "nexthop"]

_INBOUND_STEPS = STEPS[: STEPS.index("name_match") + 1]


@dataclass(frozen=True)
class Profile:
    name: str
    title: str
    policy: Policy
    source: str
    direction: Literal["outbound", "inbound"] = "outbound"
    # Which certificate name the sender insists on: none, the MX host name, the connector's
    # TlsDomain / TlsSenderCertificateName (--expect-name), or Postfix's nexthop/dot-nexthop.
    name_check: NameCheck = "none"
    needs_name: bool = False  # a TlsDomain must be given
    revocation: bool = False  # refuses a revoked chain or one whose revocation is uncheckable
    mta_sts: bool = True  # honours the recipient's MTA-STS policy
    dane: bool = True  # honours the recipient's DANE (TLSA) records
    name_label: str = "TlsDomain"
    dane_required: bool = False  # SmtpDaneMode Mandatory: no usable DANE is a failure

    @property
    def steps(self) -> tuple[str, ...]:
        return _INBOUND_STEPS if self.direction == "inbound" else STEPS


_EXO = "Microsoft Learn, Set-OutboundConnector / Set-InboundConnector and 'technical reference details about encryption' (checked 2026-11, provider-facts.md)"
_POSTFIX = "postconf(5) smtp_tls_security_level and TLS_README (Postfix 3.x, checked 2026-11)"

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "exo-default",
            "Exchange Online, no outbound connector",
            "opportunistic",
            f"Opportunistic TLS; MTA-STS always honoured; outbound DANE on since 2022-03. {_EXO}",
        ),
        Profile(
            "exo-encryption-only",
            "Exchange Online outbound connector, TlsSettings EncryptionOnly",
            "encrypt",
            f"TLS 1.2+ required, the certificate is not checked. {_EXO}",
        ),
        Profile(
            "exo-certificate-validation",
            "Exchange Online outbound connector, TlsSettings CertificateValidation",
            "verify",
            f"TLS required; chain trusted and in date; revocation checked (the partner CA's OCSP/CRL must be reachable); the MX name is not checked. {_EXO}",
            revocation=True,
        ),
        Profile(
            "exo-domain-validation",
            "Exchange Online outbound connector, TlsSettings DomainValidation + TlsDomain",
            "domain",
            f"CertificateValidation plus the TlsDomain (wildcards allowed) must be in the certificate. {_EXO}",
            name_check="tlsdomain",
            needs_name=True,
            revocation=True,
        ),
        Profile(
            "exo-smtpdane-mandatory",
            "Exchange Online outbound connector, SmtpDaneMode Mandatory",
            "dane",
            f"DANE required: mail is queued if validation fails or the destination does not support SMTP DANE; MTA-STS still honoured (MtaStsMode Opportunistic). Since late February 2026 (Exchange team blog; MC1220759). {_EXO}",
            dane_required=True,
        ),
        Profile(
            "exo-smtpdane-none",
            "Exchange Online outbound connector, SmtpDaneMode None",
            "opportunistic",
            f"DANE not applied to this partner; MTA-STS still honoured. Since late February 2026 (Exchange team blog; MC1220759). {_EXO}",
            dane=False,
        ),
        Profile(
            "exo-mtasts-none",
            "Exchange Online outbound connector, MtaStsMode None",
            "opportunistic",
            f"MTA-STS not applied to this partner; DANE still applied (SmtpDaneMode Opportunistic). Since late February 2026 (Exchange team blog; MC1220759). {_EXO}",
            mta_sts=False,
        ),
        Profile(
            "exo-inbound-require-tls",
            "Exchange Online inbound connector, RequireTls",
            "encrypt",
            f"The partner must send over TLS; judged from the certificate its MX presents (usually the one its sending hosts use). {_EXO}",
            direction="inbound",
            mta_sts=False,
            dane=False,
        ),
        Profile(
            "exo-inbound-certificate",
            "Exchange Online inbound connector, RequireTls + TlsSenderCertificateName",
            "domain",
            f"The partner's certificate must be trusted, in date and carry TlsSenderCertificateName (wildcards allowed); judged from the certificate its MX presents. {_EXO}",
            direction="inbound",
            name_check="tlsdomain",
            needs_name=True,
            mta_sts=False,
            dane=False,
            name_label="TlsSenderCertificateName",
        ),
        Profile(
            "postfix-may",
            "Postfix, smtp_tls_security_level = may",
            "opportunistic",
            f"Opportunistic TLS, falls back to clear text; no MTA-STS without an add-on (postfix-mta-sts-resolver), no DANE below level dane. {_POSTFIX}",
            mta_sts=False,
            dane=False,
        ),
        Profile(
            "postfix-encrypt",
            "Postfix, smtp_tls_security_level = encrypt",
            "encrypt",
            f"TLS required, the certificate is not checked. {_POSTFIX}",
            mta_sts=False,
            dane=False,
        ),
        Profile(
            "postfix-verify",
            "Postfix, smtp_tls_security_level = verify",
            "verify",
            f"Trusted chain and the MX host name (smtp_tls_verify_cert_match = hostname); Postfix checks no OCSP/CRL. {_POSTFIX}",
            name_check="mx",
            mta_sts=False,
            dane=False,
        ),
        Profile(
            "postfix-secure",
            "Postfix, smtp_tls_security_level = secure",
            "verify",
            f"Trusted chain and a certificate name of the next-hop domain or below (smtp_tls_secure_cert_match = nexthop, dot-nexthop; a match= list replaces it: give it as the TlsDomain); no OCSP/CRL. {_POSTFIX}",
            name_check="nexthop",
            mta_sts=False,
            dane=False,
            name_label="match= name",
        ),
        Profile(
            "postfix-dane",
            "Postfix, smtp_tls_security_level = dane",
            "dane",
            f"DANE where the MX has DNSSEC-valid TLSA records (RFC 7672), otherwise like may. {_POSTFIX}",
            mta_sts=False,
        ),
        Profile(
            "mta-sts",
            "Any RFC 8461 sender (Gmail, Exchange Online, postfix-mta-sts-resolver)",
            "mta-sts",
            "The recipient's MTA-STS policy: in enforce mode a PKIX-valid chain with the MX name, and an MX the policy lists; opportunistic where none is published (RFC 8461 section 4).",
            dane=False,
        ),
    )
}


def get_profile(name: str) -> Profile:
    """The profile called name; CheckError (exit 3) with the known names otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise CheckError(f"unknown connector {name!r}; known: {', '.join(PROFILES)}") from None


@dataclass(frozen=True)
class ConnectorResult:
    profile: Profile
    tls_domain: str | None
    findings: tuple[Finding, ...]  # the report's findings re-graded for the profile
    walk: Walk
    delivers: bool
    verdict: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.profile.name,
            "policy": self.profile.policy,
            "delivers": self.delivers,
            "verdict": self.verdict,
            "title": self.profile.title,
            "direction": self.profile.direction,
            "tls_domain": self.tls_domain,
            "source": self.profile.source,
        }


# --------------------------------------------------------------------------- grading


def _nexthop_ok(cert: CertInfo, domain: str) -> bool:
    """Postfix match=nexthop:dot-nexthop: the domain itself or any name below it."""
    names = [n for n in cert.san if not n.startswith("IP:")] or (
        [cert.common_name] if cert.common_name else []
    )
    for raw in names:
        name = (
            normalize(raw.strip().removeprefix("*."))
            if raw.strip().startswith("*.")
            else normalize(raw)
        )
        if name is None:
            continue
        if name == domain or name.endswith("." + domain):
            return True
    return False


def _published(report: Report) -> tuple[bool, set[str], set[tuple[str, str | None]]]:
    """What the domain publishes, as grading needs it: MTA-STS enforce, the MX hosts with
    usable validated TLSA records, the (host, address) pairs whose leaf matched DANE-EE."""
    mtasts_enforce = bool(
        report.mtasts and report.mtasts.mode == "enforce" and report.mtasts.error is None
    )
    dane_hosts: set[str] = set()
    dane_ee: set[tuple[str, str | None]] = set()
    settled = report.grading  # what the run itself graded with, when the stream said it
    if settled is not None:
        mtasts_enforce = settled.mtasts_enforce
        dane_hosts.update(settled.dane_hosts)
    for mx in report.mx.values():
        for s in mx.sessions.values():
            if s.dane is not None and s.dane.authenticated and s.dane.usable > 0:
                if settled is None:
                    dane_hosts.add(mx.host)
                if s.dane.matched is not None and s.dane.matched.usage == 3:
                    dane_ee.add((mx.host, s.address))
    return mtasts_enforce, dane_hosts, dane_ee


def regrade_for_policy(report: Report, policy: Policy) -> list[Finding]:
    """The report's findings graded as `check --policy policy` grades them, without probing
    again (the same context the orchestrator gives grade())."""
    mtasts_enforce, dane_hosts, dane_ee = _published(report)
    out: list[Finding] = []
    for f in report.findings:
        base = replace(f, severity=f.raised_as) if f.raised_as else f
        ctx = GradeContext(
            policy=policy,
            mtasts_enforce=mtasts_enforce,
            dane_active=f.where.host in dane_hosts,
            dane_ee_matched=(f.where.host, f.where.address) in dane_ee,
        )
        out.append(grade(base, ctx))
    return out


def regrade(report: Report, profile: Profile, tls_domain: str | None = None) -> list[Finding]:
    """The report's findings graded as `profile` would see them (no new probing)."""
    name = tls_domain or report.options.expect_name
    if profile.needs_name and not name:
        raise CheckError(
            f"connector {profile.name} needs a {profile.name_label} (--expect-name NAME)"
        )
    mtasts_enforce, dane_hosts, dane_ee = _published(report)
    recompute_names = profile.name_check in ("tlsdomain", "nexthop")
    out: list[Finding] = []
    for f in report.findings:
        if recompute_names and f.id == "cert.expected_name_mismatch":
            continue
        base = replace(f, severity=f.raised_as) if f.raised_as else f
        ee = profile.dane and (f.where.host, f.where.address) in dane_ee
        ctx = GradeContext(
            policy=profile.policy,
            mtasts_enforce=profile.mta_sts and mtasts_enforce,
            dane_active=profile.dane and f.where.host in dane_hosts,
            dane_ee_matched=ee,
        )
        g = grade(base, ctx)
        sev = g.severity
        if sev == "error" and (
            (not profile.dane and f.id.startswith("dane."))
            or (not profile.mta_sts and f.id.startswith("mtasts."))
            or (not profile.revocation and f.id in ("cert.revoked", "ca.revocation_unavailable"))
        ):
            sev = "warning"
        if f.id == "cert.name_mismatch" and not ee:
            if profile.name_check == "mx":
                sev = "error"
            elif sev == "error" and not (ctx.mtasts_enforce or ctx.dane_active):
                # The verify policy counts Postfix verify's MX-name check; this sender
                # (EXO CertificateValidation, DomainValidation, Postfix secure) has none:
                # for it the mismatch is only worth knowing.
                sev = "info"
        out.append(g if sev == g.severity else replace(g, severity=sev))
    if recompute_names:
        out.extend(_name_findings(report, profile, name))
    if profile.dane_required:
        out.extend(_dane_required_findings(report))
    return out


def _dane_required_findings(report: Report) -> list[Finding]:
    """SmtpDaneMode Mandatory: every MX address without usable, validated TLSA records."""
    out: list[Finding] = []
    for mx in report.mx.values():
        for s in mx.sessions.values():
            d = s.dane
            if d is not None and d.authenticated and d.usable > 0:
                continue
            if d is None or not d.records:
                why = "no TLSA records"
            elif not d.authenticated:
                why = "TLSA records that are not DNSSEC-validated"
            else:
                why = "no usable TLSA record"
            out.append(
                raise_finding(
                    "dane.required",
                    Where(mx.host, s.address, s.port),
                    f"the connector requires DANE and {mx.host} has {why}",
                    severity="error",
                )
            )
    return out


def _name_findings(report: Report, profile: Profile, name: str | None) -> list[Finding]:
    domain = canonical(report.target_ascii or report.target)
    out: list[Finding] = []
    for mx in report.mx.values():
        for s in mx.sessions.values():
            cert = leaf_cert(s)
            if cert is None:
                continue
            where = Where(mx.host, s.address, s.port)
            if name:
                if expected_name_matches(cert.san, cert.common_name, name):
                    continue
                summary = f"{profile.name_label} {name} is not in the certificate (SAN: {', '.join(cert.san) or 'none'})"
            else:
                if _nexthop_ok(cert, domain):
                    continue
                summary = f"no certificate name is {domain} or below it (Postfix secure matches nexthop, dot-nexthop; SAN: {', '.join(cert.san) or 'none'})"
            out.append(
                raise_finding(
                    "cert.expected_name_mismatch",
                    where,
                    summary,
                    evidence=("cert:0",),
                    severity="error",
                )
            )
    return out


# --------------------------------------------------------------------------- verdicts


def _certificate_seen(walk: Walk) -> bool:
    return any(s.name == "chain_trusted" and s.status == "pass" for s in walk.steps)


def failing_step(walk: Walk, profile: Profile) -> WalkStep | None:
    """The first step of the walk this profile cares about that fails, if any."""
    return next((s for s in walk.steps if s.name in profile.steps and s.status == "fail"), None)


def verdict(walk: Walk, profile: Profile, findings: tuple[Finding, ...] = ()) -> str:
    """One sentence: does this connector deliver over the walk's route, and if not, why.
    The reason is the summary of the first error that fails the step (`findings`), so it
    names what broke rather than whatever evidence line happens to come first."""
    step = failing_step(walk, profile)
    if step is None:
        if profile.direction == "inbound":
            if not _certificate_seen(walk):
                return (
                    "This connector cannot be judged: no certificate was seen on the partner's MX."
                )
            return "This connector would accept the partner's mail (judged from the certificate its MX presents)."
        return "This connector would deliver."
    cause = next((f for f in findings if f.id in step.findings and f.severity == "error"), None)
    if cause is not None:
        reason = cause.summary
    else:
        reason = step.evidence[0] if step.evidence else step.why
    reason = reason.rstrip(".")
    if profile.direction == "inbound":
        return (
            f"This connector would reject the partner's mail at step {step.name} because {reason}."
        )
    if walk.fallback is not None:
        return (
            f"This connector would deliver, late or only via {walk.fallback}: {walk.route} fails "
            f"at step {step.name} because {reason}. {fallback_sentence(walk)}"
        )
    return f"This connector would fail at step {step.name} because {reason}."


def _not_checked(profile: Profile, report: Report, route_host: str | None) -> dict[str, str]:
    """The walk steps this sender does not check here, each with why. What the recipient
    publishes counts: with MTA-STS in enforce mode (for a sender that honours it) or usable
    DANE on the route's host (for one that uses it), chain and name are checked by everyone."""
    settled = report.grading
    if settled is not None:
        enforce, dane_hosts = settled.mtasts_enforce, set(settled.dane_hosts)
    else:
        enforce = bool(
            report.mtasts and report.mtasts.mode == "enforce" and not report.mtasts.error
        )
        dane_hosts = set()
    strict = (profile.mta_sts and enforce) or (profile.dane and route_host in dane_hosts)
    who = profile.name
    out: dict[str, str] = {}
    if not profile.mta_sts:
        out["mta_sts"] = f"not checked: {who} does not apply MTA-STS"
    if not profile.dane:
        out["dane"] = f"not checked: {who} does not use DANE"
    if not profile.revocation:
        out["revocation"] = f"not checked: {who} does not check revocation"
    if profile.name_check == "none" and not strict:
        out["name_match"] = f"not checked: {who} does not check the certificate name"
    if profile.policy in ("opportunistic", "encrypt") and not strict:
        out["chain_trusted"] = f"not checked: {who} does not validate the chain"
    return out


def _unchecked_skipped(walk: Walk, profile: Profile, report: Report) -> Walk:
    """A step the sender does not check is SKIP with the reason, not PASS: "PASS Match the
    certificate name" under EncryptionOnly read as if the name had been checked."""
    if profile.direction != "outbound":
        return walk
    skipped = _not_checked(profile, report, walk.route.host if walk.route else None)
    steps = tuple(
        replace(s, status="skip", evidence=(skipped[s.name], *s.evidence))
        if s.status == "pass" and s.name in skipped
        else s
        for s in walk.steps
    )
    return replace(walk, steps=steps)


def judge(report: Report, profile: Profile | str, tls_domain: str | None = None) -> ConnectorResult:
    """Re-grade `report` for a connector profile and say whether it delivers."""
    prof = get_profile(profile) if isinstance(profile, str) else profile
    name = tls_domain or report.options.expect_name
    findings = regrade(report, prof, name)
    walk = build_walk(report, findings, policy=f"{prof.policy} (connector {prof.name})")
    walk = _unchecked_skipped(walk, prof, report)
    text = verdict(walk, prof, tuple(findings))
    if prof.direction == "inbound":
        delivers = failing_step(walk, prof) is None and _certificate_seen(walk)
    else:
        delivers = failing_step(walk, prof) is None or walk.fallback is not None
    return ConnectorResult(
        prof,
        name if prof.name_check == "tlsdomain" else None,
        tuple(findings),
        walk,
        delivers,
        text,
    )


def profiles_text() -> str:
    """The profile table for --help and the UI form."""
    lines = []
    for p in PROFILES.values():
        needs = f" (needs {p.name_label})" if p.needs_name else ""
        lines.append(f"{p.name:28} {p.title}{needs}")
    return "\n".join(lines)
