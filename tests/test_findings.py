"""probes/model/findings.py: the findings catalog (probes/data/findings.json) and grading
under sender policies (findings.md, "Sender policies").

The text of every finding is pasted into tickets by helpdesk engineers, so these tests hold
the catalog to the contract (ids and default severities of findings.md) and keep the text
complete, short enough to paste, and free of leftovers. (The generated docs/findings.md is
tested in test_gen_findings_doc.py.)
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from probes.model.events import Where
from probes.model.findings import (
    GradeContext,
    catalog,
    exit_code,
    grade,
    raise_finding,
    sort_findings,
)
from tests.support.scripts import load_script

ROOT = Path(__file__).resolve().parent.parent
CATALOG_PATH = ROOT / "probes" / "data" / "findings.json"
SHARED_CONTRACT = Path("/work/shared/findings.md")
MAX_CHARS = 400
GEN = load_script("gen_findings_doc")  # its glossary explains the placeholders

# The ids and default (strict) severities of the findings contract, frozen here so the test
# also runs where the shared contract file is not present.
CONTRACT: dict[str, str] = {
    "dns.nxdomain": "error",
    "dns.no_mx": "warning",
    "dns.null_mx": "error",
    "dns.mx_unresolvable": "error",
    "dns.mx_is_cname": "warning",
    "dns.mx_is_ip": "error",
    "dns.lookup_failed": "error",
    "dns.ptr_missing": "info",
    "dns.ptr_mismatch": "info",
    "smtp.connect_refused": "error",
    "smtp.connect_timeout": "error",
    "smtp.greeting_rejected": "error",
    "smtp.timeout": "error",
    "smtp.rate_limited": "warning",
    "smtp.ehlo_rejected": "error",
    "smtp.malformed_reply": "warning",
    "tls.starttls_not_offered": "error",
    "tls.starttls_refused": "error",
    "tls.handshake_failed": "error",
    "tls.legacy_only": "error",
    "tls.legacy_accepted": "warning",
    "tls.no_tls13": "info",
    "tls.no_forward_secrecy": "warning",
    "tls.weak_cipher": "warning",
    "tls.starttls_still_offered": "warning",
    "tls.plaintext_injection": "warning",
    "cert.untrusted": "error",
    "cert.self_signed": "error",
    "cert.incomplete_chain": "error",
    "cert.expired": "error",
    "cert.not_yet_valid": "error",
    "cert.expires_soon": "warning",
    "cert.name_mismatch": "error",
    "cert.expected_name_mismatch": "error",
    "cert.no_san": "warning",
    "cert.weak_key": "error",
    "cert.weak_signature": "error",
    "cert.not_server_auth": "warning",
    "cert.revoked": "error",
    "ca.ocsp_unreachable": "warning",
    "ca.crl_unreachable": "warning",
    "ca.issuer_unreachable": "warning",
    "ca.ocsp_invalid": "warning",
    "ca.crl_invalid": "warning",
    "ca.no_revocation_info": "warning",
    "mtasts.record_invalid": "error",
    "mtasts.fetch_failed": "error",
    "mtasts.policy_invalid": "error",
    "mtasts.webpki_invalid": "error",
    "mtasts.mx_not_covered": "error",
    "mtasts.testing": "info",
    "tlsrpt.missing": "info",
    "tlsrpt.invalid": "warning",
    "dane.tlsa_mismatch": "error",
    "dane.lookup_failed": "error",
    "dane.unusable": "warning",
    "dane.insecure": "info",
    "dane.dnssec_unsigned": "info",
    "pool.inconsistent": "warning",
}

KEYS = {"section", "severity", "title", "sender_error", "detail", "fix"}
SEVERITIES = {"error", "warning", "info", "ok"}
# Words that mean someone meant to come back to the text.
LEFTOVERS = re.compile(r"\b(TODO|TBD|FIXME|XXX|lorem|ipsum)\b|\.\.\.|…|\{[^}]*\}", re.I)


@pytest.fixture(scope="module")
def entries() -> dict[str, dict[str, str]]:
    data: dict[str, dict[str, str]] = json.loads(CATALOG_PATH.read_text(encoding="utf-8"))
    return data


def _texts(entries: dict[str, dict[str, str]]) -> list[tuple[str, str, str]]:
    return [(fid, field, e[field]) for fid, e in entries.items() for field in ("detail", "fix")]


def test_every_contract_id_has_its_contract_severity(entries: dict[str, dict[str, str]]) -> None:
    missing = sorted(set(CONTRACT) - set(entries))
    assert not missing, f"ids of the contract missing from the catalog: {missing}"
    wrong = {fid: (entries[fid]["severity"], sev) for fid, sev in CONTRACT.items()}
    wrong = {fid: pair for fid, pair in wrong.items() if pair[0] != pair[1]}
    assert not wrong, f"catalog severity differs from the contract (catalog, contract): {wrong}"


def test_catalog_matches_the_shared_contract_file(entries: dict[str, dict[str, str]]) -> None:
    if not SHARED_CONTRACT.exists():
        pytest.skip("the shared findings contract is not present on this machine")
    text = SHARED_CONTRACT.read_text(encoding="utf-8")
    rows = re.findall(r"^\| ([a-z0-9]+\.[a-z0-9_]+) \| (error|warning|info|ok) \|", text, re.M)
    assert len(rows) >= len(CONTRACT), "the contract table could not be parsed"
    for fid, sev in rows:
        assert fid in entries, f"{fid} is in findings.md but not in the catalog"
        assert entries[fid]["severity"] == sev, (
            f"{fid}: catalog {entries[fid]['severity']}, contract {sev}"
        )


def test_every_entry_has_all_fields_filled(entries: dict[str, dict[str, str]]) -> None:
    for fid, e in entries.items():
        assert re.fullmatch(r"[a-z0-9]+\.[a-z0-9_]+", fid), f"malformed id {fid!r}"
        assert set(e) == KEYS, f"{fid}: keys {sorted(e)}"
        assert all(isinstance(v, str) for v in e.values()), f"{fid}: a non-string value"
        assert e["severity"] in SEVERITIES, f"{fid}: severity {e['severity']!r}"
        for field in ("section", "title", "detail", "fix"):
            assert e[field].strip(), f"{fid}: empty {field}"


def test_texts_are_ticket_sized_sentences(entries: dict[str, dict[str, str]]) -> None:
    for fid, field, text in _texts(entries):
        assert len(text) <= MAX_CHARS, f"{fid}.{field} is {len(text)} characters (max {MAX_CHARS})"
        assert text == text.strip() and "\n" not in text, f"{fid}.{field}: stray whitespace"
        assert text[0].isupper(), f"{fid}.{field} does not start a sentence: {text[:30]!r}"
        assert text.endswith("."), f"{fid}.{field} does not end with a full stop"
    for fid, e in entries.items():
        assert len(e["title"]) <= MAX_CHARS, f"{fid}.title is too long"


def test_no_unexplained_placeholder_or_leftover(entries: dict[str, dict[str, str]]) -> None:
    for fid, field, text in _texts(entries):
        assert not LEFTOVERS.search(text), f"{fid}.{field}: leftover {LEFTOVERS.search(text)}"
        assert text.count("`") % 2 == 0, f"{fid}.{field}: unpaired backtick"
        for ph in re.findall(r"<[^<>\s]*>", text):
            assert ph in GEN.PLACEHOLDERS, f"{fid}.{field}: placeholder {ph} is not explained"
    for fid, e in entries.items():
        for ph in re.findall(r"<[^<>\s]*>", e["title"]):
            assert ph in GEN.PLACEHOLDERS, f"{fid}.title: placeholder {ph} is not explained"


def test_detail_names_the_typical_sender_error(entries: dict[str, dict[str, str]]) -> None:
    """Where the catalog knows the bounce, the detail repeats a code or phrase of it, so the
    engineer can match the ticket's bounce to the finding."""
    for fid, e in entries.items():
        if not e["sender_error"]:
            continue
        marks = re.findall(r"\d\.\d{1,2}\.\d{1,3}", e["sender_error"])
        marks += re.findall(r'"([^"]+)"', e["sender_error"])
        marks += re.findall(r"\b(?:sts-[a-z-]+|RevocationCheckFailure)\b", e["sender_error"])
        assert marks, f"{fid}: nothing recognisable in sender_error {e['sender_error']!r}"
        assert any(m in e["detail"] for m in marks), f"{fid}: detail names none of {marks}"


def test_raise_finding_carries_the_catalog_text() -> None:
    entry = catalog()["cert.incomplete_chain"]
    f = raise_finding("cert.incomplete_chain", Where("mx1.example.org", "127.0.0.1", 25), "x")
    assert f.detail == entry["detail"] and f.fix == entry["fix"]
    assert "intermediate" in f.fix


# --------------------------------------------------------------------------- grading


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
