"""One spoofed DNS datagram (wrong id, wrong source port, garbage) must not end a lookup:
the resolver keeps waiting for the real answer."""

from __future__ import annotations

import pytest

from mxlens_lab.smtp_server import Behaviour
from probes.diagnose import diagnose
from probes.net.dns import Resolver
from probes.report import Report
from tests.hostile.peers import HostileWorld, SpoofingDns

pytestmark = pytest.mark.lab

DOMAIN = "hostile.test"


async def test_spoofed_answers_are_ignored_while_the_real_one_is_awaited() -> None:
    async with HostileWorld(DOMAIN, [Behaviour(hostname=f"mx1.{DOMAIN}")]) as world:
        spoofer = SpoofingDns(world.resolver)
        await spoofer.start(world.address(250))
        try:
            resolver = Resolver((spoofer.host, spoofer.port), timeout=2)
            mx = await resolver.query(DOMAIN, "MX")
            assert mx.status == "NOERROR" and mx.records == (f"10 mx1.{DOMAIN}.",)
            address = await resolver.query(f"mx1.{DOMAIN}", "A")
            assert address.records == (world.address(2),)

            opts = world.options(resolver=(spoofer.host, spoofer.port), timeout=2.0)
            report = Report(DOMAIN, opts)
            async for event in diagnose(DOMAIN, opts):
                report.add(event)
        finally:
            await spoofer.stop()
    assert spoofer.spoofed >= 6
    ids = {f.id for f in report.findings}
    assert not {"dns.lookup_failed", "dane.lookup_failed", "dns.mx_unresolvable"} & ids
    sessions = [s for mx in report.mx.values() for s in mx.sessions.values()]
    assert sessions and all(s.outcome == "ok" for s in sessions)
