"""Grading our own side for the receiver that will judge it.

A sending server's certificate is judged by the receiver: an Exchange Online inbound
connector (RequireTls, TlsSenderCertificateName), or Postfix asking for
(smtpd_tls_ask_ccert) or requiring (smtpd_tls_req_ccert) a client certificate. Each
profile names the finding ids that make that receiver refuse the mail; under a profile every
other error drops to a warning, as `findings.grade()` does for senders. Without a profile the
catalog's severities stand (the strictest receiver).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from probes.model.errors import CheckError
from probes.model.events import Finding, Severity

_EXO = "Microsoft Learn, New-InboundConnector (RequireTls, TlsSenderCertificateName, RestrictDomainsToCertificate) and the hybrid mail-flow articles (checked 2026-12, provider-facts.md)"
_POSTFIX = "postconf(5) smtpd_tls_ask_ccert, smtpd_tls_req_ccert (Postfix 3.x, checked 2026-12)"

# What fails a receiver that verifies the client chain. Exchange Online does not fetch missing
# intermediates (provider-facts.md, 2026-12), and neither does OpenSSL in Postfix.
_CHAIN = {
    "cert.untrusted",
    "cert.self_signed",
    "cert.incomplete_chain",
    "cert.expired",
    "cert.not_yet_valid",
    "cert.weak_key",
    "cert.weak_signature",
}


@dataclass(frozen=True)
class ReceiverProfile:
    name: str
    title: str
    refuses: frozenset[str]
    source: str
    needs_name: bool = False
    needs_accepted: bool = False  # judged against the tenant's accepted domains


RECEIVERS: dict[str, ReceiverProfile] = {
    p.name: p
    for p in (
        ReceiverProfile(
            "exo-inbound-require-tls",
            "Exchange Online inbound connector, RequireTls",
            frozenset({"listen.no_tls", "listen.handshake_failed"}),
            f"Mail not sent over TLS is rejected; no certificate is required. {_EXO}",
        ),
        ReceiverProfile(
            "exo-inbound-certificate",
            "Exchange Online inbound connector, RequireTls + TlsSenderCertificateName",
            frozenset(
                {
                    "listen.no_tls",
                    "listen.handshake_failed",
                    "listen.no_client_cert",
                    "listen.sender_name_mismatch",
                    *_CHAIN,
                }
            ),
            f"TLS, and a client certificate from a trusted public CA, sent with its intermediates, in date, carrying TlsSenderCertificateName (wildcards allowed). {_EXO}",
            needs_name=True,
        ),
        ReceiverProfile(
            "exo-inbound-onpremises",
            "Exchange Online inbound connector from your own servers (OnPremises, hybrid)",
            frozenset(
                {
                    "listen.no_tls",
                    "listen.handshake_failed",
                    "listen.no_client_cert",
                    "listen.sender_name_mismatch",
                    "listen.not_accepted_domain",
                    *_CHAIN,
                }
            ),
            f"A certificate from a trusted third-party CA; since 2023-11-01 relay only when the certificate's domain (CN or SAN) or the MAIL FROM domain is an accepted domain. {_EXO}",
            needs_accepted=True,
        ),
        ReceiverProfile(
            "postfix-ask-ccert",
            "Postfix, smtpd_tls_ask_ccert = yes",
            frozenset({"listen.handshake_failed"}),
            f"Asks for a certificate; an absent or unverified one still delivers (it only decides permit_tls_clientcerts). {_POSTFIX}",
        ),
        ReceiverProfile(
            "postfix-req-ccert",
            "Postfix, smtpd_tls_req_ccert = yes (with smtpd_tls_security_level = encrypt)",
            frozenset(
                {
                    "listen.no_tls",
                    "listen.handshake_failed",
                    "listen.no_client_cert",
                    "cert.not_client_auth",
                    *_CHAIN,
                }
            ),
            f"TLS and a client certificate that verifies against smtpd_tls_CAfile; OpenSSL checks the clientAuth purpose. {_POSTFIX}",
        ),
    )
}


def get_receiver(name: str) -> ReceiverProfile:
    try:
        return RECEIVERS[name]
    except KeyError:
        raise CheckError(
            f"unknown connector {name!r} for our own side; known: {', '.join(RECEIVERS)}"
        ) from None


def grade_for(findings: list[Finding], profile: ReceiverProfile | None) -> list[Finding]:
    """Findings re-graded for the receiver: its refusals are errors, other errors warnings."""
    if profile is None:
        return list(findings)
    out: list[Finding] = []
    for f in findings:
        base: Severity = f.raised_as or f.severity
        sev: Severity = base
        if f.id in profile.refuses:
            sev = "error"
        elif base == "error":
            sev = "warning"
        out.append(f if sev == f.severity else replace(f, severity=sev))
    return out


def verdict(findings: list[Finding], profile: ReceiverProfile | None) -> str:
    """One line: would this receiver take the mail?"""
    errors = [f for f in findings if f.severity == "error"]
    who = profile.title if profile is not None else "A strict receiver"
    if not errors:
        warnings = [f.id for f in findings if f.severity == "warning"]
        if warnings:
            return (
                f"{who} would accept this sender; a stricter one would not ({', '.join(warnings)})."
            )
        return f"{who} would accept this sender."
    return f"{who} would refuse this sender: {errors[0].id} ({errors[0].summary})."
