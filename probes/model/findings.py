"""Findings: the catalog (probes/data/findings.json) and grading under a sender policy.

Probes call `raise_finding()` with an id from the catalog; it fills the catalog's default
severity, detail and fix. The orchestrator then calls `grade()` with what it learnt about the
domain (published MTA-STS, usable DANE) so the severity matches the sender policy that was
asked for (findings.md, "Sender policies").
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import lru_cache
from typing import Any

from probes.model.events import Evidence, Finding, Severity, Where, evidence_of

SEVERITY_ORDER: dict[str, int] = {"error": 0, "warning": 1, "info": 2, "ok": 3}
# A leaf closer than this to its notAfter gives cert.expires_soon (and the chain pane's
# warning colour: one threshold, here).
EXPIRES_SOON = timedelta(days=14)

# Which senders each --policy stands for; docs/findings.md renders it beside the ids that are
# errors under each policy, computed from grade() so the table cannot drift from the code.
POLICY_SENDERS: dict[str, str] = {
    "strict": "the strictest common sender; monitoring",
    "opportunistic": "Exchange Online without a connector, Postfix `may`",
    "encrypt": "EXO connector EncryptionOnly, Postfix `encrypt`",
    "verify": "EXO connector CertificateValidation, Postfix `verify`",
    "domain": "EXO connector DomainValidation with a TlsDomain, Postfix `secure`",
    "mta-sts": "an RFC 8461 sender (it applies the domain's MTA-STS policy only)",
    "dane": "an RFC 7672 sender (it applies the domain's DANE TLSA records only)",
}


def policy_errors(policy: str, *, mtasts_enforce: bool = False) -> list[str]:
    """The catalog ids graded error under `policy` when raised with their catalog severity
    (no DANE), for the documentation of the policies."""
    ctx = GradeContext(policy=policy, mtasts_enforce=mtasts_enforce)
    where = Where(host="mx.example")
    out = []
    for fid in catalog():
        if grade(raise_finding(fid, where, ""), ctx).severity == "error":
            out.append(fid)
    return out


@lru_cache(maxsize=1)
def catalog() -> dict[str, dict[str, Any]]:
    """The findings catalog: id -> {severity, title, detail, fix, sender_error, section}."""
    # Imported here: importlib.resources pulls in tempfile, zipfile and more, which a check
    # should not load before its first DNS question.
    from importlib import resources

    text = resources.files("probes").joinpath("data/findings.json").read_text("utf-8")
    data: dict[str, dict[str, Any]] = json.loads(text)
    return data


def raise_finding(
    fid: str,
    where: Where,
    summary: str,
    *,
    detail: str | None = None,
    fix: str | None = None,
    evidence: Iterable[Evidence | str] = (),
    severity: Severity | None = None,
) -> Finding:
    """Build a finding with the catalog's defaults. `summary` says what was seen, here."""
    entry = catalog().get(fid)
    if entry is None:
        raise KeyError(f"unknown finding id {fid!r}: add it to probes/data/findings.json")
    return Finding(
        id=fid,
        severity=severity or entry["severity"],
        raised_as=severity or entry["severity"],
        where=where,
        summary=summary,
        detail=detail or entry["detail"] or entry["title"],
        fix=fix or entry["fix"],
        evidence=evidence_of(evidence),
    )


@dataclass(frozen=True)
class GradeContext:
    """What the grade of a finding depends on besides its id."""

    policy: str = "strict"
    mtasts_enforce: bool = False  # the domain publishes a valid MTA-STS policy in enforce mode
    dane_active: bool = False  # DNSSEC-validated, usable TLSA records for this MX
    dane_ee_matched: bool = False  # a DANE-EE (usage 3) record matched: names and dates moot


# Findings that stop every sender, whatever its TLS policy.
_DELIVERY = {
    "dns.nxdomain",
    "dns.null_mx",
    "dns.mx_unresolvable",
    "dns.mx_is_ip",
    "dns.lookup_failed",
    "smtp.connect_refused",
    "smtp.connect_timeout",
    "smtp.greeting_rejected",
    "smtp.timeout",
    "smtp.ehlo_rejected",
}
# What a sender that insists on encryption (but checks no certificate) refuses.
_ENCRYPT = {
    "tls.starttls_not_offered",
    "tls.starttls_refused",
    "tls.handshake_failed",
    "tls.legacy_only",
}
# The PKIX path checks: a chain to a trusted root, within its dates (RFC 5280 6.1). Verifying
# senders, MTA-STS enforce and (absent DANE-EE) everyone who checks certificates apply them.
_PKIX_PATH = {
    "cert.untrusted",
    "cert.self_signed",
    "cert.unparseable",
    "cert.incomplete_chain",
    "cert.expired",
    "cert.not_yet_valid",
}
# What a sender that validates the chain (and revocation) refuses; names not checked.
_VERIFY = _PKIX_PATH | {
    "cert.revoked",
    "cert.weak_signature",
    "cert.weak_key",
    "ca.revocation_unavailable",
}
_MTASTS = {
    "mtasts.record_invalid",
    "mtasts.fetch_failed",
    "mtasts.policy_invalid",
    "mtasts.webpki_invalid",
    "mtasts.mx_not_covered",
}
# What an MTA-STS sender refuses when the policy is in enforce mode (RFC 8461 section 4).
_MTASTS_ENFORCED = _ENCRYPT | _PKIX_PATH | {"cert.name_mismatch", "mtasts.mx_not_covered"}
_DANE = {"dane.tlsa_mismatch", "dane.lookup_failed"}
# DANE-TA (RFC 7672 3.1.2, 3.2.2): the chain up to the TLSA trust anchor is checked, dates and
# the MX name included; only DANE-EE makes them moot.
_DANE_TA_DEMANDS = {"cert.expired", "cert.not_yet_valid", "cert.name_mismatch"}
# Under DANE-EE the certificate's names and dates are not checked (RFC 7672 3.1.1).
_DANE_EE_MOOT = _PKIX_PATH | {"cert.name_mismatch", "cert.expires_soon"}


def _errors_for(ctx: GradeContext) -> set[str] | None:
    """The ids that are errors under ctx; None means 'the catalog's own severities'."""
    published: set[str] = set(_DANE)
    if ctx.mtasts_enforce:
        published |= _MTASTS_ENFORCED
    if ctx.dane_active:
        published |= _ENCRYPT
        if not ctx.dane_ee_matched:
            published |= _DANE_TA_DEMANDS
    if ctx.policy == "strict":
        return None
    if ctx.policy == "opportunistic":
        return _DELIVERY | published
    if ctx.policy == "encrypt":
        return _DELIVERY | _ENCRYPT | published
    if ctx.policy == "verify":
        # Postfix verify checks the MX name (smtp_tls_verify_cert_match = hostname); EXO
        # CertificateValidation does not, but the policy stands for both.
        return _DELIVERY | _ENCRYPT | _VERIFY | {"cert.name_mismatch"} | published
    if ctx.policy == "domain":
        return _DELIVERY | _ENCRYPT | _VERIFY | {"cert.expected_name_mismatch"} | published
    if ctx.policy == "mta-sts":
        return _DELIVERY | published | (_MTASTS if ctx.mtasts_enforce else set())
    if ctx.policy == "dane":
        return _DELIVERY | published | (_ENCRYPT if ctx.dane_active else set())
    raise ValueError(f"unknown policy {ctx.policy!r}")


def grade(finding: Finding, ctx: GradeContext) -> Finding:
    """Re-grade one finding for the sender policy in ctx, and say why in its detail.

    Under strict the catalog severity stands, except that DANE-EE makes certificate name and
    date problems moot, unless the domain's MTA-STS enforce policy still demands them (a
    sender that validates MTA-STS and not DANE refuses the certificate; strict must not be
    laxer than opportunistic). Under other policies, an id that the policy does not refuse
    drops from error to warning; warnings and infos keep their grade. When the recipient's
    own MTA-STS or DANE is what makes a finding an error, the detail says so and for whom,
    instead of the catalog's generic text about who still delivers.
    """
    sev: Severity = finding.severity
    sts_demands = ctx.mtasts_enforce and finding.id in _MTASTS_ENFORCED
    moot = ctx.dane_ee_matched and finding.id in _DANE_EE_MOOT
    if moot and (ctx.policy == "dane" or (ctx.policy == "strict" and not sts_demands)):
        # RFC 8461 section 2: a sender doing both DANE and MTA-STS lets DANE decide.
        sev = "info" if sev != "ok" else sev
    elif ctx.policy == "strict" and finding.id == "ca.revocation_unavailable":
        sev = "warning"
    else:
        errors = _errors_for(ctx)
        if errors is not None:
            if finding.id in errors:
                sev = "error"
            elif sev == "error":
                sev = "warning"
    detail = _detail_for(finding, ctx, sev, sts_demands and not (moot and ctx.policy == "dane"))
    if sev == finding.severity and detail == finding.detail:
        return finding
    return replace(finding, severity=sev, detail=detail)


# Why a recipient's published policy makes a finding an error, and for whom.
_STS_REASON = (
    "The domain publishes an MTA-STS policy in enforce mode, so every sender that honours "
    "MTA-STS refuses this MX: Exchange Online (with or without a connector), Gmail and Postfix "
    "with an MTA-STS resolver queue the mail and then bounce it (Exchange 4.7.5/5.7.5 "
    '"Remote certificate failed MTA-STS validation", or 4.4.8/5.4.8 "MX hosts of ... failed '
    'MTA-STS validation").'
)
_STS_DANE_EE = (
    " A DANE-EE record matches the certificate, so a sender that does DANE (Postfix dane) "
    "accepts it; a sender that validates MTA-STS and not DANE does not."
)
_DANE_REASON = (
    "The MX host publishes DNSSEC-validated TLSA records, so DANE senders (Exchange Online "
    "outbound, Postfix dane) require TLS and a chain that matches them: they queue the mail "
    "and then bounce it (Exchange 4/5.7.321-325)."
)


def _first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s+(?=[A-Z])", text, maxsplit=1)[0]


def _detail_for(finding: Finding, ctx: GradeContext, sev: Severity, by_sts: bool) -> str:
    """The detail a graded finding shows: the catalog's, or what it is plus the published
    policy that makes it an error."""
    entry = catalog().get(finding.id)
    base = (entry["detail"] or entry["title"]) if entry else finding.detail
    if sev != "error" or entry is None:
        return base
    by_dane = ctx.dane_active and (
        finding.id in _ENCRYPT or (not ctx.dane_ee_matched and finding.id in _DANE_TA_DEMANDS)
    )
    reasons: list[str] = []
    if by_sts:
        reasons.append(_STS_REASON + (_STS_DANE_EE if ctx.dane_ee_matched else ""))
    if by_dane:
        reasons.append(_DANE_REASON)
    if not reasons:
        return base
    return " ".join([_first_sentence(base), *reasons])


def worst(findings: list[Finding]) -> Severity | None:
    """The worst severity among findings (ok and info count), None when there are none."""
    if not findings:
        return None
    return min((f.severity for f in findings), key=lambda s: SEVERITY_ORDER[s])


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Worst first, then by place and id, so reports are stable."""
    return sorted(findings, key=lambda f: (SEVERITY_ORDER[f.severity], str(f.where), f.id))


def exit_code(findings: list[Finding]) -> int:
    """The monitoring-plugin exit status for a finished check (docs/cli.md)."""
    sevs = {f.severity for f in findings}
    if "error" in sevs:
        return 2
    if "warning" in sevs:
        return 1
    return 0
