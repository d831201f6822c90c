"""The lab DNS server over real UDP and TCP sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from mxlens_lab.dns_server import DnsServer
from probes.net.dns import Resolver

pytestmark = pytest.mark.lab

RECORDS = {
    ("healthy.lab.test", "MX"): ["10 mx1.healthy.lab.test.", "20 mx2.healthy.lab.test."],
    ("mx1.healthy.lab.test", "A"): ["127.77.0.10"],
    ("mx2.healthy.lab.test", "A"): ["127.77.0.11"],
    ("_mta-sts.healthy.lab.test", "TXT"): ['"v=STSv1; id=20261122"'],
    ("_25._tcp.mx1.healthy.lab.test", "TLSA"): ["3 1 1 " + "ab" * 32],
    ("10.0.77.127.in-addr.arpa", "PTR"): ["mx1.healthy.lab.test."],
    ("alias.lab.test", "CNAME"): ["alias2.lab.test."],
    ("alias2.lab.test", "CNAME"): ["mx1.healthy.lab.test."],
    ("dangling.lab.test", "CNAME"): ["nowhere.lab.test."],
    ("signed.lab.test", "MX"): ["10 mx.signed.lab.test."],
    ("mx.signed.lab.test", "A"): ["127.77.0.20"],
    ("_25._tcp.mx.signed.lab.test", "TLSA"): ["3 1 1 " + "cd" * 32],
    ("bogus.lab.test", "MX"): ["10 mx.bogus.lab.test."],
    ("mx.bogus.lab.test", "A"): ["127.77.0.30"],
    ("big.lab.test", "TXT"): [f'"{i:03d} ' + "x" * 200 + '"' for i in range(12)],
}


@pytest.fixture
async def server() -> AsyncIterator[DnsServer]:
    srv = DnsServer(
        RECORDS,
        signed_zones={"signed.lab.test"},
        servfail={"mx.bogus.lab.test/A", "*.broken.lab.test"},
        silent={"quiet.lab.test"},
    )
    await srv.start("127.0.0.1", 0)
    try:
        yield srv
    finally:
        await srv.stop()


async def ask(
    srv: DnsServer, name: str, rtype: str, *, tcp: bool = False, payload: int = 1232
) -> dns.message.Message:
    q = dns.message.make_query(name, rtype, use_edns=0, payload=payload, want_dnssec=True)
    assert srv.port is not None
    if tcp:
        return await dns.asyncquery.tcp(q, "127.0.0.1", port=srv.port, timeout=2)
    return await dns.asyncquery.udp(q, "127.0.0.1", port=srv.port, timeout=2)


def texts(msg: dns.message.Message, rtype: str) -> list[str]:
    want = dns.rdatatype.from_text(rtype)
    return sorted(rd.to_text() for rrset in msg.answer if rrset.rdtype == want for rd in rrset)


async def test_a_mx_txt_tlsa_ptr(server: DnsServer) -> None:
    r = await ask(server, "mx1.healthy.lab.test", "A")
    assert r.rcode() == dns.rcode.NOERROR and texts(r, "A") == ["127.77.0.10"]
    r = await ask(server, "HEALTHY.lab.test.", "MX")  # names are case-insensitive
    # Name compression against the question keeps the asker's case in the targets.
    assert [t.lower() for t in texts(r, "MX")] == [
        "10 mx1.healthy.lab.test.",
        "20 mx2.healthy.lab.test.",
    ]
    r = await ask(server, "_mta-sts.healthy.lab.test", "TXT")
    assert texts(r, "TXT") == ['"v=STSv1; id=20261122"']
    r = await ask(server, "_25._tcp.mx1.healthy.lab.test", "TLSA")
    assert texts(r, "TLSA") == ["3 1 1 " + "ab" * 32]
    r = await ask(server, "10.0.77.127.in-addr.arpa", "PTR")
    assert texts(r, "PTR") == ["mx1.healthy.lab.test."]
    assert ("mx1.healthy.lab.test", "A") in server.queries


async def test_cname_chain_is_in_the_answer(server: DnsServer) -> None:
    r = await ask(server, "alias.lab.test", "A")
    assert r.rcode() == dns.rcode.NOERROR
    assert texts(r, "CNAME") == ["alias2.lab.test.", "mx1.healthy.lab.test."]
    assert texts(r, "A") == ["127.77.0.10"]
    # The stub resolver of the engine follows it too.
    answer = await Resolver(("127.0.0.1", server.port or 0), timeout=2).query("alias.lab.test", "A")
    assert answer.records == ("127.77.0.10",)
    assert answer.cname == "mx1.healthy.lab.test"
    # An alias to a name that does not exist: CNAME plus NXDOMAIN, as resolvers answer.
    r = await ask(server, "dangling.lab.test", "A")
    assert r.rcode() == dns.rcode.NXDOMAIN and texts(r, "CNAME") == ["nowhere.lab.test."]


async def test_nxdomain_nodata_refused(server: DnsServer) -> None:
    r = await ask(server, "nope.lab.test", "MX")
    assert r.rcode() == dns.rcode.NXDOMAIN and not r.answer
    r = await ask(server, "mx1.healthy.lab.test", "AAAA")  # exists with A only
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    r = await ask(server, "_tcp.mx1.healthy.lab.test", "TXT")  # empty non-terminal
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    r = await ask(server, "example.com", "A")
    assert r.rcode() == dns.rcode.REFUSED
    r = await ask(server, "1.0.77.127.in-addr.arpa", "PTR")
    assert r.rcode() == dns.rcode.NXDOMAIN


async def test_ad_flag_only_in_signed_zones(server: DnsServer) -> None:
    r = await ask(server, "_25._tcp.mx.signed.lab.test", "TLSA")
    assert r.flags & dns.flags.AD and texts(r, "TLSA")
    r = await ask(server, "nothing.signed.lab.test", "A")  # signed denial of existence
    assert r.rcode() == dns.rcode.NXDOMAIN and r.flags & dns.flags.AD
    r = await ask(server, "_25._tcp.mx1.healthy.lab.test", "TLSA")
    assert not r.flags & dns.flags.AD
    answer = await Resolver(("127.0.0.1", server.port or 0), timeout=2).query(
        "mx.signed.lab.test", "A"
    )
    assert answer.authenticated and answer.records == ("127.77.0.20",)


async def test_servfail_by_name_type_and_subtree(server: DnsServer) -> None:
    r = await ask(server, "mx.bogus.lab.test", "A")
    assert r.rcode() == dns.rcode.SERVFAIL
    r = await ask(server, "mx.bogus.lab.test", "AAAA")  # only A was made bogus
    assert r.rcode() == dns.rcode.NOERROR
    r = await ask(server, "deep.name.broken.lab.test", "TLSA")
    assert r.rcode() == dns.rcode.SERVFAIL


async def test_silent_name_times_out(server: DnsServer) -> None:
    q = dns.message.make_query("quiet.lab.test", "MX")
    with pytest.raises(dns.exception.Timeout):
        await dns.asyncquery.udp(q, "127.0.0.1", port=server.port or 0, timeout=0.5)
    answer = await Resolver(("127.0.0.1", server.port or 0), timeout=0.5).query(
        "quiet.lab.test", "MX"
    )
    assert answer.status == "TIMEOUT"
    # The server is still alive for other names.
    r = await ask(server, "healthy.lab.test", "MX")
    assert texts(r, "MX")


async def test_truncation_over_udp_then_full_answer_over_tcp(server: DnsServer) -> None:
    r = await ask(server, "big.lab.test", "TXT", payload=512)
    assert r.flags & dns.flags.TC and not r.answer
    r = await ask(server, "big.lab.test", "TXT", tcp=True)
    assert not r.flags & dns.flags.TC and len(texts(r, "TXT")) == 12
    # Without EDNS the limit is 512 too.
    q = dns.message.make_query("big.lab.test", "TXT")
    r = await dns.asyncquery.udp(q, "127.0.0.1", port=server.port or 0, timeout=2)
    assert r.flags & dns.flags.TC
    # The engine's resolver retries over TCP by itself (its payload, 1232, is too small too).
    answer = await Resolver(("127.0.0.1", server.port or 0), timeout=2).query("big.lab.test", "TXT")
    assert len(answer.records) == 12


async def test_changes_while_running(server: DnsServer) -> None:
    server.add("new.lab.test", "A", ["127.77.0.99"])
    r = await ask(server, "new.lab.test", "A")
    assert texts(r, "A") == ["127.77.0.99"]
    server.remove("new.lab.test")
    r = await ask(server, "new.lab.test", "A")
    assert r.rcode() == dns.rcode.NXDOMAIN
    server.silent.add("healthy.lab.test")
    with pytest.raises(dns.exception.Timeout):
        await dns.asyncquery.udp(
            dns.message.make_query("healthy.lab.test", "MX"),
            "127.0.0.1",
            port=server.port or 0,
            timeout=0.5,
        )


async def test_garbage_does_not_kill_the_server(server: DnsServer) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.sendto(b"\x12\x34\x01\x00" + b"\xff" * 20, ("127.0.0.1", server.port or 0))
        sock.settimeout(2)
        # In a thread: the server runs on this event loop and must keep running.
        data, _ = await asyncio.to_thread(sock.recvfrom, 4096)
        assert data[:2] == b"\x12\x34" and data[3] & 0x0F == dns.rcode.FORMERR
    finally:
        sock.close()
    r = await ask(server, "healthy.lab.test", "MX", tcp=True)
    assert texts(r, "MX")


async def test_fixed_port_shared_by_udp_and_tcp() -> None:
    first = DnsServer(RECORDS)
    await first.start("127.0.0.1", 0)
    try:
        assert first.port
        second = DnsServer(RECORDS)
        with pytest.raises(OSError):
            await second.start("127.0.0.1", first.port)
    finally:
        await first.stop()
