"""probes/net/dns.py: domain names as typed, --resolver, and the Resolver against a real
responder on loopback (statuses, the AD bit, the cache, the DNS log)."""

from __future__ import annotations

import pytest

from probes.model.errors import CheckError
from probes.model.events import DnsQuery
from probes.net.dns import Resolver, parse_resolver, to_ascii
from tests.support.dns import DnsResponder


@pytest.mark.parametrize(
    ("typed", "ascii_form"),
    [
        ("Example.ORG.", "example.org"),
        ("  partner.example  ", "partner.example"),
        ("bücher.example", "xn--bcher-kva.example"),
    ],
)
def test_to_ascii_canonical_a_label(typed: str, ascii_form: str) -> None:
    assert to_ascii(typed) == ascii_form


@pytest.mark.parametrize("bad", ["", "localhost", "a b.example", "x\x1b.example", "a..example"])
def test_to_ascii_refuses_what_is_not_a_domain(bad: str) -> None:
    with pytest.raises(CheckError):
        to_ascii(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("[::1]:53", ("::1", 53)),
        ("::1", ("::1", 53)),
    ],
)
def test_parse_resolver(text: str, expected: tuple[str, int]) -> None:
    assert parse_resolver(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [("dns.example", "give an IP address"), ("[::1", "missing ]"), ("127.0.0.1:0", "bad port")],
)
def test_parse_resolver_refuses(text: str, reason: str) -> None:
    with pytest.raises(CheckError, match=reason):
        parse_resolver(text)


async def test_statuses_ad_bit_cache_and_log(dns_server: DnsResponder) -> None:
    dns_server.zone[("mx.example.test", "A")] = ["192.0.2.1"]
    dns_server.zone[("fail.example.test", "A")] = "SERVFAIL"
    dns_server.authenticated.add("mx.example.test")
    log: list[DnsQuery] = []
    resolver = Resolver(("127.0.0.1", dns_server.port), timeout=2.0, on_query=log.append)

    a = await resolver.query("MX.Example.Test.", "a")
    assert (a.status, a.records, a.authenticated) == ("NOERROR", ("192.0.2.1",), True)
    assert (await resolver.query("mx.example.test", "AAAA")).status == "NODATA"
    assert (await resolver.query("nothing.example.test", "A")).status == "NXDOMAIN"
    assert (await resolver.query("fail.example.test", "A")).status == "SERVFAIL"

    asked_before = len(dns_server.asked)
    again = await resolver.query("mx.example.test", "A")
    assert again is a and len(dns_server.asked) == asked_before  # answered from the cache
    assert [(q.name, q.rtype, q.status) for q in log][:2] == [
        ("mx.example.test", "A", "NOERROR"),
        ("mx.example.test", "AAAA", "NODATA"),
    ]


async def test_silent_server_is_a_timeout_not_an_exception(dns_server: DnsResponder) -> None:
    dns_server.drop.add("silent.example.test")
    resolver = Resolver(("127.0.0.1", dns_server.port), timeout=0.3)
    assert (await resolver.query("silent.example.test", "A")).status == "TIMEOUT"
