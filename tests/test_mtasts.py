"""MTA-STS: record and policy parsers, mx patterns, and check_mtasts against a real DNS
responder and a real HTTPS server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset
import pytest

from mxlens_lab.pki import CA as LabCA
from mxlens_lab.pki import Issued as LabIssued
from probes.checks.mtasts import (
    MAX_ERRORS_SHOWN,
    Policy,
    RecordError,
    StsRecord,
    check_mtasts,
    mx_matches,
    parse_policy,
    parse_sts_record,
)
from probes.model.events import FindingRaised, MtaStsChecked
from probes.model.options import Options
from probes.net.dns import Resolver
from probes.net.http import Fetcher
from probes.net.trust import Roots
from tests.support.dns import DnsResponder, txt
from tests.support.http import HttpsServer, Reply
from tests.support.pki import lab_pki

# --------------------------------------------------------------------------- record parser


def test_record_minimal() -> None:
    rec = parse_sts_record(["v=STSv1; id=20240101"])
    assert isinstance(rec, StsRecord)
    assert rec.id == "20240101"


def test_record_trailing_semicolon_tabs_and_extensions() -> None:
    rec = parse_sts_record(["v=STSv1;\tid=abc123 ;  ext_1=val;"])
    assert isinstance(rec, StsRecord)
    assert rec.id == "abc123"
    assert rec.extensions == (("ext_1", "val"),)


def test_record_absent_when_no_stsv1_among_other_txt() -> None:
    assert parse_sts_record([]) is None
    assert parse_sts_record(["v=spf1 -all", "google-site-verification=xyz"]) is None
    # STSv10 is not STSv1: a sender discards it.
    assert parse_sts_record(["v=STSv10; id=1"]) is None


def test_record_other_txt_ignored_next_to_the_valid_one() -> None:
    rec = parse_sts_record(["v=spf1 -all", "v=STSv1; id=1"])
    assert isinstance(rec, StsRecord)


@pytest.mark.parametrize(
    ("records", "reason_part"),
    [
        (["v=STSv1; id=1", "v=STSv1; id=2"], "exactly one"),
        (["v=STSv1"], "nothing after"),
        (["v=STSv1;"], "empty field"),
        (["v=STSv1; ext=1"], "no id="),
        (["v=STSv1 id=1"], "followed by ';'"),
        (["v=STSv1; id=abc-def"], "letters or digits"),
        (["v=STSv1; id=" + "a" * 33], "letters or digits"),
        (["v=STSv1; id="], "letters or digits"),
        (["v=STSv1; id=1; id=2"], "more than one id"),
        (["v=STSv1; id = 1"], "field name"),
        (["v=STSv1;; id=1"], "empty field"),
        (["v=STSv1; id=1; junk"], "no '='"),
        ([" v=STSv1; id=1"], "does not begin exactly"),
        (["\ufeffv=STSv1; id=1"], "does not begin exactly"),
        (["V=stsv1; id=1"], "does not begin exactly"),
    ],
)
def test_record_invalid(records: list[str], reason_part: str) -> None:
    rec = parse_sts_record(records)
    assert isinstance(rec, RecordError), rec
    assert reason_part in rec.reason


# --------------------------------------------------------------------------- policy parser

GOOD = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 604800\n"


def test_policy_lf() -> None:
    pol = parse_policy(GOOD)
    assert isinstance(pol, Policy)
    assert pol.mode == "enforce"
    assert pol.max_age == 604800
    assert pol.mx == ("mail.example.com", "*.example.net")


def test_policy_crlf_and_no_final_newline_and_unknown_keys() -> None:
    text = (
        "version: STSv1\r\nmode: testing\r\nfoo_bar: anything at all\r\nmx: a.example\r\nmax_age: 0"
    )
    pol = parse_policy(text)
    assert isinstance(pol, Policy)
    assert pol.mode == "testing"
    assert pol.max_age == 0
    assert pol.extensions == (("foo_bar", "anything at all"),)


def test_policy_none_mode_needs_no_mx() -> None:
    pol = parse_policy("version: STSv1\nmode: none\nmax_age: 86400\n")
    assert isinstance(pol, Policy)
    assert pol.mx == ()


def test_policy_max_age_limit_is_accepted() -> None:
    pol = parse_policy("version: STSv1\nmode: none\nmax_age: 31557600\n")
    assert isinstance(pol, Policy)


def _errors(text: str) -> str:
    result = parse_policy(text)
    assert isinstance(result, list), result
    return " | ".join(result)


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("mode: enforce\nversion: STSv1\nmx: a.example\nmax_age: 1\n", "first field"),
        ("mode: enforce\nmx: a.example\nmax_age: 1\n", "no version"),
        ("version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n", "must be 'STSv1'"),
        ("version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1\n", "mode is 'Enforce'"),
        ("version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n", "mode is 'strict'"),
        ("version: STSv1\nmx: a.example\nmax_age: 1\n", "no mode"),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n", "above the limit"),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n", "whole number"),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1d\n", "whole number"),
        ("version: STSv1\nmode: enforce\nmx: a.example\n", "no max_age"),
        ("version: STSv1\nmode: enforce\nmax_age: 1\n", "no mx"),
        ("version: STSv1\nmode: testing\nmax_age: 1\n", "no mx"),
        (
            "version: STSv1\nmode: enforce\nmode: testing\nmx: a.example\nmax_age: 1\n",
            "mode appears more than once",
        ),
        (
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\nmax_age: 2\n",
            "max_age appears more than once",
        ),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age 1\n", "no ':'"),
        ("version: STSv1\nmode : enforce\nmx: a.example\nmax_age: 1\n", "not a valid field"),
        ("version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1\n", "not a host name"),
        ("version: STSv1\nmode: enforce\nmx: bad host\nmax_age: 1\n", "not a host name"),
        ("\ufeffversion: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n", "byte-order mark"),
        ("version: STSv1\rmode: enforce\rmx: a.example\rmax_age: 1\r", "carriage return"),
        ("<html><body>Not Found</body></html>\n", "no ':'"),
        ("\x00\x01\ufffd\ufffd garbage", "no ':'"),
    ],
)
def test_policy_invalid(text: str, part: str) -> None:
    assert part in _errors(text)


def test_policy_reports_all_errors_at_once() -> None:
    errs = parse_policy("version: STSv1\nmode: bogus\nmax_age: x\n")
    assert isinstance(errs, list)
    assert len(errs) >= 2


# --------------------------------------------------------------------------- mx patterns


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("mail.example.com", "mail.example.com", True),
        ("mail.example.com", "MAIL.Example.COM.", True),
        ("mail.example.com", "mail2.example.com", False),
        ("*.example.com", "a.example.com", True),
        ("*.EXAMPLE.com", "A.example.COM", True),
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", "example.com", False),
        ("*.example.com", "aexample.com", False),
        ("*.mx.microsoft", "contoso-com.j-v1.mx.microsoft", False),
        ("*.mail.protection.outlook.com", "contoso-com.mail.protection.outlook.com", True),
        ("example.com", "a.example.com", False),
    ],
)
def test_mx_matches(pattern: str, host: str, expected: bool) -> None:
    assert mx_matches(pattern, host) is expected


# --------------------------------------------------------------------------- check_mtasts

DOMAIN = "example.test"
POLICY_PATH = "/.well-known/mta-sts.txt"
ENFORCE = b"version: STSv1\r\nmode: enforce\r\nmx: mx1.example.test\r\nmx: *.mail.example.test\r\nmax_age: 86400\r\n"


@dataclass
class World:
    dns: DnsResponder
    https: HttpsServer
    resolver: Resolver
    fetcher: Fetcher

    async def run(self, mx_hosts: list[str]) -> list[Any]:
        return [e async for e in check_mtasts(DOMAIN, mx_hosts, self.resolver, self.fetcher)]


PKI = lab_pki()
CA = PKI.root("mxlens-test-ca")
OTHER_CA = PKI.root("some-other-ca")


def make_leaf(ca: LabCA, names: list[str]) -> LabIssued:
    return PKI.leaf(ca, names, ocsp=False, crl=False, aia=False)


GOOD_LEAF = make_leaf(CA, [f"mta-sts.{DOMAIN}"])


async def _world(dns_server: DnsResponder, leaf: LabIssued = GOOD_LEAF) -> AsyncIterator[World]:
    https = await HttpsServer(leaf).start()
    dns_server.zone[(f"_mta-sts.{DOMAIN}", "TXT")] = txt("v=STSv1; id=2026010101")
    dns_server.zone[(f"mta-sts.{DOMAIN}", "A")] = ["127.0.0.1"]
    https.routes[POLICY_PATH] = Reply(body=ENFORCE)
    resolver = Resolver(("127.0.0.1", dns_server.port), timeout=2)
    options = Options(https_port=https.port, timeout=5, private_endpoints=True)
    fetcher = Fetcher(resolver, options, Roots([CA.cert], "test CA"))
    try:
        yield World(dns_server, https, resolver, fetcher)
    finally:
        await fetcher.aclose()
        await https.close()


@pytest.fixture
async def world(dns_server: DnsResponder) -> AsyncIterator[World]:
    async for w in _world(dns_server):
        yield w


def findings(events: list[Any]) -> list[tuple[str, str]]:
    return [(e.finding.id, e.finding.where.host) for e in events if isinstance(e, FindingRaised)]


def checked(events: list[Any]) -> MtaStsChecked:
    assert isinstance(events[0], MtaStsChecked)
    assert sum(isinstance(e, MtaStsChecked) for e in events) == 1
    return events[0]


async def test_enforce_policy_covering_every_mx(world: World) -> None:
    events = await world.run(["mx1.example.test", "b.mail.example.test"])
    ev = checked(events)
    assert ev.mode == "enforce" and ev.error is None
    assert ev.record_id == "2026010101"
    assert ev.max_age == 86400
    assert ev.mx_patterns == ("mx1.example.test", "*.mail.example.test")
    assert ev.policy_text is not None and "mode: enforce" in ev.policy_text
    assert findings(events) == []
    assert world.https.requests == [f"GET {POLICY_PATH} HTTP/1.1"]


async def test_enforce_policy_uncovered_mx_one_finding_each(world: World) -> None:
    events = await world.run(["mx1.example.test", "a.b.mail.example.test", "mx9.example.test"])
    assert checked(events).error is None  # the policy itself is fine
    assert findings(events) == [
        ("mtasts.mx_not_covered", "a.b.mail.example.test"),
        ("mtasts.mx_not_covered", "mx9.example.test"),
    ]


async def test_no_record_means_not_used(world: World) -> None:
    del world.dns.zone[(f"_mta-sts.{DOMAIN}", "TXT")]
    events = await world.run(["mx1.example.test"])
    ev = checked(events)
    assert ev.record is None and ev.error is None and ev.mode is None
    assert findings(events) == []
    assert world.https.requests == []  # no policy fetch without a record


async def test_unrelated_txt_means_not_used(world: World) -> None:
    world.dns.zone[(f"_mta-sts.{DOMAIN}", "TXT")] = txt("v=spf1 -all")
    events = await world.run(["mx1.example.test"])
    assert checked(events).record is None
    assert findings(events) == []


async def test_two_records(world: World) -> None:
    world.dns.zone[(f"_mta-sts.{DOMAIN}", "TXT")] = txt("v=STSv1; id=1", "v=STSv1; id=2")
    events = await world.run(["mx1.example.test"])
    ev = checked(events)
    assert ev.error is not None and "exactly one" in ev.error
    assert findings(events) == [("mtasts.record_invalid", DOMAIN)]
    assert world.https.requests == []


async def test_record_split_in_two_strings_is_joined(world: World) -> None:
    # One TXT record made of two character-strings: senders concatenate them.
    world.dns.zone[(f"_mta-sts.{DOMAIN}", "TXT")] = [
        dns.rdtypes.ANY.TXT.TXT(
            dns.rdataclass.IN, dns.rdatatype.TXT, [b"v=STSv1; ", b"id=20260101"]
        )
    ]
    events = await world.run(["mx1.example.test"])
    assert checked(events).record_id == "20260101"
    assert findings(events) == []


async def test_record_lookup_servfail_is_reported_without_finding(world: World) -> None:
    world.dns.zone[(f"_mta-sts.{DOMAIN}", "TXT")] = "SERVFAIL"
    events = await world.run(["mx1.example.test"])
    ev = checked(events)
    assert ev.error is not None and "SERVFAIL" in ev.error
    assert findings(events) == []


async def test_testing_mode_is_info_and_names_uncovered_mx(world: World) -> None:
    world.https.routes[POLICY_PATH] = Reply(body=ENFORCE.replace(b"enforce", b"testing"))
    events = await world.run(["mx1.example.test", "other.example.test"])
    assert checked(events).mode == "testing"
    raised = [e.finding for e in events if isinstance(e, FindingRaised)]
    assert [f.id for f in raised] == ["mtasts.testing"]
    assert raised[0].severity == "info"
    assert "other.example.test" in raised[0].summary


async def test_status_404(world: World) -> None:
    world.https.routes.clear()
    events = await world.run(["mx1.example.test"])
    assert findings(events) == [("mtasts.fetch_failed", DOMAIN)]
    ev = checked(events)
    assert ev.error is not None and "404" in ev.error
    assert ev.record_id == "2026010101"


async def test_redirect_is_not_followed(world: World) -> None:
    world.https.routes[POLICY_PATH] = Reply(
        301, b"", {"Location": f"https://mta-sts.{DOMAIN}/elsewhere.txt"}
    )
    world.https.routes["/elsewhere.txt"] = Reply(body=ENFORCE)
    events = await world.run(["mx1.example.test"])
    assert findings(events) == [("mtasts.fetch_failed", DOMAIN)]
    summary = next(e.finding.summary for e in events if isinstance(e, FindingRaised))
    assert "redirect" in summary
    assert world.https.requests == [f"GET {POLICY_PATH} HTTP/1.1"]


async def test_wrong_media_type(world: World) -> None:
    world.https.routes[POLICY_PATH] = Reply(body=ENFORCE, headers={"Content-Type": "text/html"})
    events = await world.run(["mx1.example.test"])
    assert findings(events) == [("mtasts.fetch_failed", DOMAIN)]
    assert "text/html" in (checked(events).error or "")


async def test_media_type_parameters_allowed(world: World) -> None:
    world.https.routes[POLICY_PATH] = Reply(
        body=ENFORCE, headers={"Content-Type": "Text/Plain; charset=utf-8"}
    )
    events = await world.run(["mx1.example.test"])
    assert findings(events) == []
    assert checked(events).mode == "enforce"


async def test_too_big(world: World) -> None:
    world.https.routes[POLICY_PATH] = Reply(body=ENFORCE + b"x-pad: " + b"a" * 70_000 + b"\n")
    events = await world.run(["mx1.example.test"])
    assert findings(events) == [("mtasts.fetch_failed", DOMAIN)]


async def test_policy_host_does_not_resolve(world: World) -> None:
    del world.dns.zone[(f"mta-sts.{DOMAIN}", "A")]
    events = await world.run(["mx1.example.test"])
    assert findings(events) == [("mtasts.fetch_failed", DOMAIN)]
    assert "DNS" in (checked(events).error or "")


async def test_invalid_policy(world: World) -> None:
    world.https.routes[POLICY_PATH] = Reply(
        body=b"version: STSv1\nmode: enforce\nmax_age: 99999999999\n"
    )
    events = await world.run(["mx1.example.test"])
    assert findings(events) == [("mtasts.policy_invalid", DOMAIN)]
    ev = checked(events)
    assert ev.mode is None and ev.error is not None
    assert ev.policy_text is not None  # shown to the user as received


async def test_policy_with_invalid_utf8_is_kept_with_replacement(world: World) -> None:
    world.https.routes[POLICY_PATH] = Reply(body=b"\xff\xfe garbage\n")
    events = await world.run(["mx1.example.test"])
    assert findings(events) == [("mtasts.policy_invalid", DOMAIN)]
    assert "\ufffd" in (checked(events).policy_text or "")


async def test_untrusted_certificate_is_webpki_invalid(
    dns_server: DnsResponder,
) -> None:
    leaf = make_leaf(OTHER_CA, [f"mta-sts.{DOMAIN}"])
    async for w in _world(dns_server, leaf):
        events = await w.run(["mx1.example.test"])
        assert findings(events) == [("mtasts.webpki_invalid", DOMAIN)]
        assert (checked(events).error or "").startswith("fetch: TLS:")


async def test_wrong_name_certificate_is_webpki_invalid(
    dns_server: DnsResponder,
) -> None:
    leaf = make_leaf(CA, [f"www.{DOMAIN}"])
    async for w in _world(dns_server, leaf):
        events = await w.run(["mx1.example.test"])
        assert findings(events) == [("mtasts.webpki_invalid", DOMAIN)]


async def test_ten_thousand_bad_lines_become_a_short_finding(world: World) -> None:
    """A hostile MTA-STS host serves thousands of bad lines: the finding names the first few
    and counts the rest, instead of one 259 KB summary flooding the Findings pane."""
    body = b"version: STSv1\r\n" + b"x\r\n" * 10_000
    world.https.routes[POLICY_PATH] = Reply(body=body[: 64 * 1024])
    events = await world.run(["mx1.example.test"])
    invalid = [
        e.finding
        for e in events
        if isinstance(e, FindingRaised) and e.finding.id == "mtasts.policy_invalid"
    ]
    assert len(invalid) == 1
    summary = invalid[0].summary
    assert len(summary) < 1000, len(summary)
    assert summary.count("no ':' in") == MAX_ERRORS_SHOWN
    assert "and " in summary and " more" in summary
    assert len(checked(events).error or "") < 1000
