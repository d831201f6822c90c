"""The greeting names the server software; fix advice speaks its configuration language."""

from __future__ import annotations

import pytest

from probes.model.findings import catalog
from probes.model.server_software import _data, identify, tailored_fix


@pytest.mark.parametrize(
    "greeting, software",
    [
        ("220 mx.example.org ESMTP Sendmail 8.17.1.9/8.17.1.9; Tue, 1 Dec 2026", "sendmail"),
        ("220 mx.example.org ESMTP Postfix (Debian/GNU)", "postfix"),
        ("220 mx.example.org ESMTP Exim 4.96 Tue, 01 Dec 2026 20:00:00 +0000", "exim"),
        ("220 mx.example.org ESMTP OpenSMTPD", "opensmtpd"),
        (
            "220 EX01.corp.example Microsoft ESMTP MAIL Service ready at Tue, 1 Dec 2026",
            "exchange",
        ),
        ("220 mx.example.org ESMTP ready", None),
    ],
)
def test_identify(greeting: str, software: str | None) -> None:
    assert identify(greeting) == software


def test_sendmail_incomplete_chain_names_cacertfile() -> None:
    fix = tailored_fix("cert.incomplete_chain", "sendmail")
    assert fix is not None and "CACertFile" in fix and "confCACERT" in fix
    assert "smtpd_tls_chain_files" in (tailored_fix("cert.incomplete_chain", "postfix") or "")
    assert "tls_certificate" in (tailored_fix("cert.incomplete_chain", "exim") or "")
    assert tailored_fix("cert.incomplete_chain", None) is None
    assert tailored_fix("tls.no_tls13", "postfix") is None  # not tailored: the catalog's fix


def test_every_tailored_fix_is_for_a_known_finding_and_software() -> None:
    data = _data()
    for fid, by_software in data["fixes"].items():
        assert fid in catalog(), fid
        assert set(by_software) <= set(data["software"]), fid
        for text in by_software.values():
            assert text[0].isupper() and text.endswith(".") and len(text) <= 400, (fid, text)
    for entry in data["software"].values():
        assert entry["source"], entry


@pytest.mark.lab
async def test_a_sendmail_greeting_tailors_the_chain_fix_in_a_real_diagnosis() -> None:
    from mxlens_lab.world import Lab
    from probes.diagnose import diagnose
    from probes.report import Report

    names = ["incomplete-chain-sendmail", "incomplete-chain"]
    async with Lab(scenarios=names) as lab:
        fixes = {}
        for name in names:
            options = lab.options(name)
            domain = lab.scenarios[name].domain
            report = Report(domain, options)
            async for event in diagnose(domain, options):
                report.add(event)
            (f,) = [f for f in report.findings if f.id == "cert.incomplete_chain"]
            fixes[name] = f.fix
    assert fixes["incomplete-chain-sendmail"] == tailored_fix("cert.incomplete_chain", "sendmail")
    assert fixes["incomplete-chain"] == catalog()["cert.incomplete_chain"]["fix"]
