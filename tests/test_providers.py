"""Provider knowledge: MX name matching, the dated data file, and the report's "providers"
section (which must name the CA endpoint hosts of the chain actually seen)."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from probes.interpret.providers import (
    data_date,
    provider_for,
    providers,
    summarise,
    summary_text,
    url_hosts,
)


@pytest.mark.parametrize(
    ("mx", "provider"),
    [
        ("contoso-com.mail.protection.outlook.com", "exchange-online"),
        ("CONTOSO-COM.MAIL.PROTECTION.OUTLOOK.COM.", "exchange-online"),
        ("contoso-com.j-v1.mx.microsoft", "exchange-online"),
        ("fabrikam-co-uk.r-v1.mx.microsoft.", "exchange-online"),
        ("aspmx.l.google.com", "google-workspace"),
        ("alt3.aspmx.l.google.com", "google-workspace"),
        ("aspmx2.googlemail.com", "google-workspace"),
        ("mx0a-00123456.pphosted.com", "proofpoint"),
        ("mx1-us1.ppe-hosted.com", "proofpoint"),
        ("eu-smtp-inbound-1.mimecast.com", "mimecast"),
        # look-alikes that must not match: a suffix is a whole label boundary
        ("mail.protection.outlook.com.evil.example", None),
        ("evilmail.protection.outlook.com", None),
        ("notgoogle.com", None),
        ("mx.microsoft.example", None),
        ("mx1.healthy.lab.test", None),
        ("", None),
    ],
)
def test_provider_for(mx: str, provider: str | None) -> None:
    got = provider_for(mx)
    assert (got.id if got else None) == provider


def test_data_is_dated_and_every_fact_has_a_source() -> None:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", data_date())
    for p in providers():
        assert p.mx_suffixes and p.mx_source.strip()
        for group in (p.tls, p.certificate_names, p.roots, p.revocation_hosts):
            for fact in group:
                assert fact.get("source", "").strip(), (p.id, fact)


def test_exchange_online_expectations_match_provider_facts() -> None:
    exo = provider_for("contoso-com.mail.protection.outlook.com")
    assert exo is not None
    assert exo.tls_min == "TLSv1.2"
    g2 = [r for r in exo.roots if r["name"] == "DigiCert Global Root G2"]
    assert g2 and g2[0]["sha1"] == "DF3C24F9BFD666761B268073FE06D1CC8D4F82A4"
    assert g2[0]["from"] == "2026-03-22"
    assert {"crl3.digicert.com", "crl4.digicert.com", "ocsp.digicert.com"} <= set(
        exo.known_revocation_hosts()
    )
    names = [n for group in exo.certificate_names for n in group["names"]]
    assert "mail.protection.outlook.com" in names


def test_url_hosts_survive_hostile_urls() -> None:
    urls = [
        "http://OCSP.DigiCert.com/",
        "http://crl3.digicert.com/x.crl",
        "http://crl3.digicert.com/y.crl",
        "http://[::1",  # unbalanced bracket: urlsplit raises
        "not a url",
        "ldap:///CN=x",
    ]
    assert url_hosts(urls) == ["crl3.digicert.com", "ocsp.digicert.com"]


def test_summary_names_providers_and_must_reach_hosts() -> None:
    summary = summarise(
        ["contoso-com.mail.protection.outlook.com", "backup.example.org"],
        ["http://ocsp.digicert.com", "http://crl3.digicert.com/a.crl"],
    )
    assert summary["mx"] == [
        {
            "host": "contoso-com.mail.protection.outlook.com",
            "provider": "exchange-online",
            "name": "Microsoft Exchange Online (Microsoft 365)",
            "form": "mail.protection.outlook.com",
            "dnssec": False,
            "form_note": summary["mx"][0]["form_note"],
        },
        {"host": "backup.example.org", "provider": None, "name": None},
    ]
    assert list(summary["details"]) == ["exchange-online"]
    assert summary["must_reach"] == (
        "these CA endpoints must be reachable from your mail server: crl3.digicert.com, ocsp.digicert.com"
    )
    text = "\n".join(summary_text(summary))
    assert "expects TLSv1.2 or newer" in text
    assert "DigiCert Global Root G2" in text
    assert "backup.example.org: no known provider" in text


def test_summary_text_is_empty_when_nothing_is_known() -> None:
    assert summary_text(summarise(["mx.example.org"], [])) == []


def test_summary_text_makes_hostile_names_visible() -> None:
    lines = summary_text(summarise(["mx.\x1b[2Jexample.org"], ["http://ocsp.example.org/"]))
    assert lines and not any("\x1b" in line for line in lines)


# ------------------------------------------------------------------ the lab: the list of CA hosts


@pytest.mark.lab
async def test_report_lists_the_ca_endpoint_hosts_of_the_chain_seen() -> None:
    from mxlens_lab.world import Lab
    from tests.support.collect import collect

    async with Lab(scenarios=["healthy"]) as lab:
        domain = lab.domain("healthy")
        reports = []
        for endpoints in (True, False):
            options = replace(lab.options("healthy"), endpoints=endpoints, extra_probes=False)
            reports.append(await collect(domain, options))
    for report in reports:  # with endpoint checks, and with --no-endpoints (URLs from the chain)
        doc = report.to_json()["providers"]
        assert doc["mx"] == [{"host": "mx1.healthy.lab.test", "provider": None, "name": None}]
        assert doc["ca_endpoint_hosts"] == ["pki.lab.test"]
        assert (
            doc["must_reach"]
            == "these CA endpoints must be reachable from your mail server: pki.lab.test"
        )
        assert (
            "these CA endpoints must be reachable from your mail server: pki.lab.test"
            in report.to_text()
        )


def test_2026_facts_mx_forms_and_removed_hosts() -> None:
    exo = provider_for("contoso-com.j-v1.mx.microsoft")
    assert exo is not None and exo.id == "exchange-online"
    new = exo.mx_form("contoso-com.j-v1.mx.microsoft")
    old = exo.mx_form("contoso-com.mail.protection.outlook.com")
    assert new is not None and new["dnssec"] is True
    assert old is not None and old["dnssec"] is False
    # Removed on 2024-10-08: listed as stale, never as required.
    required = set(exo.known_revocation_hosts())
    assert not {"crl.microsoft.com", "mscrl.microsoft.com", "ocsp.msocsp.com"} & required
    gone = {h for g in exo.removed_revocation_hosts for h in g["hosts"]}
    assert gone == {"crl.microsoft.com", "mscrl.microsoft.com", "ocsp.msocsp.com"}
    assert all(g["removed"] == "2024-10-08" and g["source"] for g in exo.removed_revocation_hosts)
    assert {"oneocsp.microsoft.com", "cacerts.digicert.com"} <= required
    summary = summarise(
        ["contoso-com.j-v1.mx.microsoft", "contoso-com.mail.protection.outlook.com"], []
    )
    assert [r["dnssec"] for r in summary["mx"]] == [True, False]
    text = "\n".join(summary_text(summary))
    assert "no longer used since 2024-10-08" in text and "MX form mx.microsoft" in text


def test_a_trust_store_without_digicert_g2_is_a_finding_for_an_exo_route() -> None:
    import certifi
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    from probes.interpret.providers import missing_root_findings

    with open(certifi.where(), "rb") as fh:
        bundle = x509.load_pem_x509_certificates(fh.read())
    certifi_sha1 = {c.fingerprint(hashes.SHA1()).hex().upper() for c in bundle}
    assert "DF3C24F9BFD666761B268073FE06D1CC8D4F82A4" in certifi_sha1
    mx = ["contoso-com.mail.protection.outlook.com", "contoso-com.j-v1.mx.microsoft"]
    assert missing_root_findings(mx, certifi_sha1, "certifi") == []
    without = certifi_sha1 - {"DF3C24F9BFD666761B268073FE06D1CC8D4F82A4"}
    (f,) = missing_root_findings(mx, without, "/etc/old-roots.pem")  # once per provider
    assert f.id == "ca.provider_root_missing" and f.severity == "warning"
    assert "DigiCert Global Root G2" in f.summary and "/etc/old-roots.pem" in f.summary
    assert missing_root_findings(["mx1.example.org"], set(), "none") == []


@pytest.mark.lab
async def test_an_exo_route_checked_with_the_lab_roots_says_g2_is_missing() -> None:
    # The lab's --ca-file holds only the lab root: checking an Exchange Online MX name with it
    # is checking from a host whose trust store lacks DigiCert Global Root G2. The lab DNS
    # refuses the name (nothing leaves the machine), so only the trust-store fact is judged.
    from mxlens_lab.world import Lab
    from probes.model.options import MxOverride
    from tests.support.collect import collect

    exo_mx = "contoso-com.mail.protection.outlook.com"
    async with Lab(scenarios=["healthy"]) as lab:
        options = replace(lab.options("healthy"), mx=(MxOverride(exo_mx),), extra_probes=False)
        report = await collect("contoso.com", options)
    found = [f for f in report.findings if f.id == "ca.provider_root_missing"]
    assert len(found) == 1 and found[0].where.host == exo_mx, report.findings
    assert "DigiCert Global Root G2" in found[0].summary and lab.ca_file in found[0].summary
