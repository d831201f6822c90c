"""Findings: the catalog (probes/data/findings.json) and grading under a sender policy.

Probes call `raise_finding()` with an id from the catalog; it fills the catalog's default
severity, detail and fix. The orchestrator then calls `grade()` with what it learnt about the
domain (published MTA-STS, usable DANE) so the severity matches the sender policy that was
asked for (findings.md, "Sender policies").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from typing import Any

from probes.model.events import Finding, Severity, Where

SEVERITY_ORDER: dict[str, int] = {"error": 0, "warning": 1, "info": 2, "ok": 3}

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
    evidence: tuple[str, ...] = (),
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
        evidence=evidence,
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
            # DANE-TA (RFC 7672 3.1.2): the chain is checked up to the TLSA trust anchor,
            # dates included; only DANE-EE makes the leaf's dates moot.
            published |= {"cert.expired", "cert.not_yet_valid"}
    if ctx.policy == "strict":
        return None
    if ctx.policy == "opportunistic":
        return _DELIVERY | published
    if ctx.policy == "encrypt":
        return _DELIVERY | _ENCRYPT | published
    if ctx.policy == "verify":
        return _DELIVERY | _ENCRYPT | _VERIFY | published
    if ctx.policy == "domain":
        return _DELIVERY | _ENCRYPT | _VERIFY | {"cert.expected_name_mismatch"} | published
    if ctx.policy == "mta-sts":
        return _DELIVERY | published | (_MTASTS if ctx.mtasts_enforce else set())
    if ctx.policy == "dane":
        return _DELIVERY | published | (_ENCRYPT if ctx.dane_active else set())
    raise ValueError(f"unknown policy {ctx.policy!r}")


def grade(finding: Finding, ctx: GradeContext) -> Finding:
    """Re-grade one finding for the sender policy in ctx.

    Under strict the catalog severity stands, except that DANE-EE makes certificate name and
    date problems moot. Under other policies, an id that the policy does not refuse drops
    from error to warning; warnings and infos keep their grade.
    """
    sev: Severity = finding.severity
    if ctx.dane_ee_matched and ctx.policy in ("strict", "dane") and finding.id in _DANE_EE_MOOT:
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
    if (
        ctx.policy in ("verify", "domain")
        and finding.id == "cert.name_mismatch"
        and not ctx.mtasts_enforce
    ):
        sev = "info"  # EXO CertificateValidation and Postfix verify do not check the MX name
    return finding if sev == finding.severity else replace(finding, severity=sev)


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
