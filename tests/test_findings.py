"""The findings catalog (probes/data/findings.json) and its generated doc (docs/findings.md).

The text of every finding is pasted into tickets by helpdesk engineers, so these tests hold
the catalog to the contract (ids and default severities of findings.md) and keep the text
complete, short enough to paste, and free of leftovers.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

from probes.model.events import Where
from probes.model.findings import catalog, raise_finding

ROOT = Path(__file__).resolve().parent.parent
CATALOG_PATH = ROOT / "probes" / "data" / "findings.json"
DOC_PATH = ROOT / "docs" / "findings.md"
SHARED_CONTRACT = Path("/work/shared/findings.md")
MAX_CHARS = 400

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


def _load_generator() -> ModuleType:
    path = ROOT / "scripts" / "gen_findings_doc.py"
    spec = importlib.util.spec_from_file_location("gen_findings_doc", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _load_generator()


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


def test_doc_is_up_to_date_with_the_catalog() -> None:
    assert DOC_PATH.exists(), "docs/findings.md is missing: run scripts/gen_findings_doc.py"
    expected = GEN.render(GEN.load_catalog())
    assert DOC_PATH.read_text(encoding="utf-8") == expected, (
        "docs/findings.md is stale: run /work/venv/bin/python scripts/gen_findings_doc.py"
    )
    assert GEN.main(["--check"]) == 0


def test_doc_shows_every_finding_with_its_words(entries: dict[str, dict[str, str]]) -> None:
    doc = DOC_PATH.read_text(encoding="utf-8")
    for fid, e in entries.items():
        block = doc.split(f"\n### {fid}\n", 1)
        assert len(block) == 2, f"no section for {fid} in docs/findings.md"
        body = block[1].split("\n### ", 1)[0]
        assert f"**{e['severity']}**" in body
        assert GEN.md(e["detail"]) in body and GEN.md(e["fix"]) in body
        if e["sender_error"]:
            assert "Typical sender error: " + GEN.md(e["sender_error"]) in body


def test_check_mode_catches_a_stale_doc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = tmp_path / "findings.md"
    monkeypatch.setattr(GEN, "DOC", doc)
    assert GEN.main(["--check"]) == 1  # missing
    doc.write_text(GEN.render(GEN.load_catalog()).replace("**Fix:**", "**Fix (old):**", 1))
    assert GEN.main(["--check"]) == 1  # stale
    assert GEN.main([]) == 0
    assert GEN.main(["--check"]) == 0


def test_markdown_keeps_placeholders_and_code_visible() -> None:
    text = "Publish `_mta-sts.<domain>` and check mta-sts.<domain> for *.example.org | _x_."
    out = GEN.md(text)
    assert "`_mta-sts.<domain>`" in out  # code spans are left alone
    assert "mta-sts.\\<domain\\>" in out  # not swallowed as an HTML tag
    assert "\\*.example.org \\| \\_x\\_." in out
    assert GEN.md("an `unpaired backtick <mx>") == "an `unpaired backtick \\<mx\\>"
