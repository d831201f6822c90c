"""TLS-RPT: the record parser, and check_tlsrpt against a real DNS responder on 127.0.0.1."""

from __future__ import annotations

from typing import Any

import pytest

from probes.checks.tlsrpt import TlsRptError, TlsRptRecord, check_tlsrpt, parse_tlsrpt
from probes.model.events import FindingRaised, TlsRptChecked
from probes.net.dns import Resolver
from tests.support.dns import DnsResponder, txt


def test_single_mailto() -> None:
    rec = parse_tlsrpt(["v=TLSRPTv1; rua=mailto:tlsrpt@example.com"])
    assert isinstance(rec, TlsRptRecord)
    assert rec.rua == ("mailto:tlsrpt@example.com",)


def test_mailto_and_https_list_with_spaces_and_trailing_semicolon() -> None:
    rec = parse_tlsrpt(
        ["v=TLSRPTv1;rua=mailto:a@example.com , https://reports.example.com/tlsrpt;"]
    )
    assert isinstance(rec, TlsRptRecord)
    assert rec.rua == ("mailto:a@example.com", "https://reports.example.com/tlsrpt")


def test_extension_field_allowed() -> None:
    rec = parse_tlsrpt(["v=TLSRPTv1; rua=mailto:a@example.com; ext=1"])
    assert isinstance(rec, TlsRptRecord)
    assert rec.extensions == (("ext", "1"),)


def test_absent() -> None:
    assert parse_tlsrpt([]) is None
    assert parse_tlsrpt(["v=spf1 -all"]) is None


@pytest.mark.parametrize(
    ("records", "part"),
    [
        (["v=TLSRPTv1"], "nothing after"),
        (["v=TLSRPTv1;"], "empty field"),
        (["v=TLSRPTv1; ext=1"], "no rua="),
        (["v=TLSRPTv1; rua="], "empty address"),
        (["v=TLSRPTv1; rua=mailto:a@example.com,"], "empty address"),
        (["v=TLSRPTv1; rua=a@example.com"], "neither a mailto"),
        (["v=TLSRPTv1; rua=http://example.com/r"], "http:// is not allowed"),
        (["v=TLSRPTv1; rua=mailto:nobody"], "not a valid mailto"),
        (["v=TLSRPTv1; rua=https://"], "not a valid https"),
        (["v=TLSRPTv1; rua=mailto:a@example.com; rua=mailto:b@example.com"], "more than one rua"),
        (["v=TLSRPTv1 rua=mailto:a@example.com"], "followed by ';'"),
        (
            ["v=TLSRPTv1; rua=mailto:a@x.example", "v=TLSRPTv1; rua=mailto:b@x.example"],
            "exactly one",
        ),
        ([" v=TLSRPTv1; rua=mailto:a@example.com"], "does not begin exactly"),
        (["\ufeffv=TLSRPTv1; rua=mailto:a@example.com"], "does not begin exactly"),
        (["v=tlsrptv1; rua=mailto:a@example.com"], "does not begin exactly"),
    ],
)
def test_invalid(records: list[str], part: str) -> None:
    rec = parse_tlsrpt(records)
    assert isinstance(rec, TlsRptError), rec
    assert part in rec.reason


DOMAIN = "example.test"
NAME = f"_smtp._tls.{DOMAIN}"


async def _run(server: DnsResponder) -> list[Any]:
    resolver = Resolver(("127.0.0.1", server.port), timeout=2)
    return [e async for e in check_tlsrpt(DOMAIN, resolver)]


def _ids(events: list[Any]) -> list[str]:
    return [e.finding.id for e in events if isinstance(e, FindingRaised)]


async def test_check_valid(dns_server: DnsResponder) -> None:
    dns_server.zone[(NAME, "TXT")] = txt("v=TLSRPTv1; rua=mailto:tls@example.test")
    events = await _run(dns_server)
    assert isinstance(events[0], TlsRptChecked)
    assert events[0].rua == ("mailto:tls@example.test",)
    assert events[0].error is None
    assert _ids(events) == []


async def test_check_missing(dns_server: DnsResponder) -> None:
    events = await _run(dns_server)
    assert isinstance(events[0], TlsRptChecked) and events[0].record is None
    assert _ids(events) == ["tlsrpt.missing"]
    assert events[1].finding.severity == "info"
    assert events[1].finding.where.host == DOMAIN


async def test_check_invalid_carries_reason(dns_server: DnsResponder) -> None:
    dns_server.zone[(NAME, "TXT")] = txt("v=TLSRPTv1; rua=http://r.example.test/")
    events = await _run(dns_server)
    assert isinstance(events[0], TlsRptChecked)
    assert events[0].record == "v=TLSRPTv1; rua=http://r.example.test/"
    assert _ids(events) == ["tlsrpt.invalid"]
    assert "http://" in events[1].finding.summary
    assert events[1].finding.severity == "warning"


async def test_check_servfail_no_finding(dns_server: DnsResponder) -> None:
    dns_server.zone[(NAME, "TXT")] = "SERVFAIL"
    events = await _run(dns_server)
    assert isinstance(events[0], TlsRptChecked)
    assert events[0].error is not None and "SERVFAIL" in events[0].error
    assert _ids(events) == []
