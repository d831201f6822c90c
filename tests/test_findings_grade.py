"""Grading findings under sender policies (findings.md, "Sender policies")."""

from __future__ import annotations

from dataclasses import replace

import pytest

from probes.model.events import Where
from probes.model.findings import GradeContext, exit_code, grade, raise_finding, sort_findings

W = Where("mx1.example.org", "192.0.2.10", 25)


def sev(fid: str, policy: str, **ctx: bool) -> str:
    return grade(raise_finding(fid, W, "seen"), GradeContext(policy=policy, **ctx)).severity


@pytest.mark.parametrize(
    "fid, policy, expected",
    [
        # strict: the catalog's severity
        ("cert.expired", "strict", "error"),
        ("tls.starttls_not_offered", "strict", "error"),
        ("tls.legacy_accepted", "strict", "warning"),
        # opportunistic (EXO without connector, Postfix may): delivery-stoppers only
        ("cert.expired", "opportunistic", "warning"),
        ("tls.starttls_not_offered", "opportunistic", "warning"),
        ("smtp.connect_refused", "opportunistic", "error"),
        ("dane.tlsa_mismatch", "opportunistic", "error"),
        # encrypt (EXO EncryptionOnly, Postfix encrypt): TLS must happen, certs are not checked
        ("tls.starttls_not_offered", "encrypt", "error"),
        ("tls.legacy_only", "encrypt", "error"),
        ("cert.untrusted", "encrypt", "warning"),
        # verify (EXO CertificateValidation): chain and revocation, not the MX name
        ("cert.untrusted", "verify", "error"),
        ("ca.revocation_unavailable", "verify", "error"),
        ("cert.name_mismatch", "verify", "error"),  # Postfix verify checks the MX name
        ("cert.name_mismatch", "domain", "warning"),
        ("cert.expected_name_mismatch", "verify", "warning"),
        # domain (EXO DomainValidation + TlsDomain, Postfix secure)
        ("cert.expected_name_mismatch", "domain", "error"),
        ("cert.revoked", "domain", "error"),
        # mta-sts policy without a published policy: opportunistic
        ("cert.name_mismatch", "mta-sts", "warning"),
        # warnings never become errors by a laxer policy
        ("ca.ocsp_unreachable", "opportunistic", "warning"),
        ("tlsrpt.missing", "verify", "info"),
        # revocation unreachable is a warning for strict (it cannot check, but delivers)
        ("ca.revocation_unavailable", "strict", "warning"),
    ],
)
def test_policy_grades(fid: str, policy: str, expected: str) -> None:
    assert sev(fid, policy) == expected


def test_published_mta_sts_enforce_makes_pkix_failures_errors_for_everyone() -> None:
    for policy in ("opportunistic", "encrypt", "verify", "mta-sts"):
        assert sev("cert.name_mismatch", policy, mtasts_enforce=True) == "error", policy
        assert sev("tls.starttls_not_offered", policy, mtasts_enforce=True) == "error", policy


def test_dane_ee_match_makes_names_and_dates_moot() -> None:
    assert sev("cert.expired", "strict", dane_ee_matched=True) == "info"
    assert sev("cert.name_mismatch", "dane", dane_ee_matched=True) == "info"
    assert sev("tls.starttls_not_offered", "dane", dane_active=True) == "error"
    assert sev("tls.starttls_not_offered", "dane") == "warning"  # no DANE published


def test_dane_ta_keeps_date_checks() -> None:
    # DANE published and usable, but the match was not DANE-EE (a DANE-TA record): the leaf's
    # dates still count for every sender that honours the domain's DANE.
    for policy in ("dane", "opportunistic", "encrypt"):
        assert sev("cert.expired", policy, dane_active=True) == "error", policy
    # ... and DANE-EE still makes them moot.
    assert sev("cert.expired", "dane", dane_active=True, dane_ee_matched=True) == "info"


def test_exit_code_and_order() -> None:
    err = raise_finding("cert.expired", W, "x")
    warn = raise_finding("tls.legacy_accepted", W, "x")
    info = raise_finding("tlsrpt.missing", Where("example.org"), "x")
    assert exit_code([]) == 0
    assert exit_code([info]) == 0
    assert exit_code([info, warn]) == 1
    assert exit_code([warn, err, info]) == 2
    assert [f.id for f in sort_findings([info, warn, err])] == [
        "cert.expired",
        "tls.legacy_accepted",
        "tlsrpt.missing",
    ]


def test_unknown_id_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        raise_finding("cert.no_such_thing", W, "x")


def test_mta_sts_enforce_outweighs_dane_ee_except_for_a_dane_sender() -> None:
    # A DNSSEC-validated DANE-EE match makes names and dates moot for DANE, but a sender
    # that validates the domain's MTA-STS enforce policy and not DANE still refuses them:
    # strict must not be laxer than opportunistic.
    ctx = {"dane_active": True, "dane_ee_matched": True, "mtasts_enforce": True}
    for fid in ("cert.expired", "cert.name_mismatch"):
        for policy in ("strict", "opportunistic", "encrypt", "verify", "mta-sts"):
            assert sev(fid, policy, **ctx) == "error", (fid, policy)
        assert sev(fid, "dane", **ctx) == "info", fid  # RFC 8461 section 2: DANE decides
    # Without MTA-STS enforce the match still makes them moot under strict.
    assert sev("cert.expired", "strict", dane_active=True, dane_ee_matched=True) == "info"


def test_an_error_made_by_a_published_policy_says_why_and_for_whom() -> None:
    f = grade(
        raise_finding("cert.untrusted", W, "seen"),
        GradeContext(policy="opportunistic", mtasts_enforce=True),
    )
    assert f.severity == "error"
    assert "MTA-STS policy in enforce mode" in f.detail and "Exchange Online" in f.detail
    assert "still deliver" not in f.detail and "deliver unless" not in f.detail
    # DANE-EE matched and MTA-STS enforce: the text says who accepts and who refuses.
    f = grade(
        raise_finding("cert.expired", W, "seen"),
        GradeContext(policy="strict", mtasts_enforce=True, dane_active=True, dane_ee_matched=True),
    )
    assert "validates MTA-STS and not DANE" in f.detail
    # DANE makes STARTTLS mandatory: the reason is the TLSA record.
    f = grade(
        raise_finding("tls.starttls_not_offered", W, "seen"),
        GradeContext(policy="opportunistic", dane_active=True),
    )
    assert f.severity == "error" and "TLSA" in f.detail
    # Re-grading for a laxer sender gives the catalog's own text back.
    g = grade(replace(f, severity=f.raised_as or f.severity), GradeContext(policy="opportunistic"))
    assert g.severity == "warning" and "TLSA" not in g.detail


def test_a_policy_claims_nothing_one_of_its_senders_does_not_do() -> None:
    # verify stands for EXO CertificateValidation and Postfix verify; Postfix checks the MX
    # name, so no text under verify may say the mismatch is harmless.
    f = grade(raise_finding("cert.name_mismatch", W, "seen"), GradeContext(policy="verify"))
    assert f.severity == "error"
    assert "Postfix verify" in f.detail and "still deliver" not in f.detail
