"""URLs in a certificate are chosen by whoever made it: mxlens must not connect to internal
hosts or odd ports for them by default, must not send userinfo, must bound what it downloads
and keeps, and one fetch must not try a hundred silent addresses with a full timeout each."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest

from probes.diagnose import diagnose
from probes.report import Report
from tests.hostile.peers import EndlessHttp, HostileWorld, served_leaf

pytestmark = pytest.mark.lab

DOMAIN = "hostile.test"
MX = f"mx1.{DOMAIN}"
INTERNAL = f"internal.{DOMAIN}"


async def check(world: HostileWorld, **options: object) -> Report:
    opts = world.options(**options)
    report = Report(DOMAIN, opts)
    async for event in diagnose(DOMAIN, opts):
        report.add(event)
    return report


async def test_no_connection_reaches_a_loopback_listener_named_in_a_certificate(
    tmp_path: Path,
) -> None:
    world = HostileWorld(DOMAIN)
    listener = EndlessHttp("endless")
    await listener.start(world.address(200))
    port = listener.port
    urls = {
        "crl": (
            f"http://{listener.host}:{port}/crl",
            f"http://{INTERNAL}:{port}/admin?x=1",
            f"http://{INTERNAL}/crl",  # port 80, but the name resolves to loopback
        ),
        "ocsp": (f"http://{INTERNAL}:{port}/ocsp",),
        "ca_issuers": (f"http://user:secret@{listener.host}:{port}/ca",),
    }
    behaviour, ca_file = served_leaf(
        MX, tmp_path, crl=urls["crl"], ocsp=urls["ocsp"], ca_issuers=urls["ca_issuers"]
    )
    world.behaviours = [behaviour]
    world.records = {(INTERNAL, "A"): [listener.host]}
    try:
        async with world:
            report = await check(world, ca_file=ca_file, timeout=2.0)
            assert listener.connections == 0, "a certificate aimed mxlens at a loopback port"
            ids = {f.id: f for f in report.findings}
            assert ids["ca.endpoint_not_fetched"].severity == "info"
            # not fetched is not "unreachable": no false network verdict, nothing to scan with
            for fid in ("ca.crl_unreachable", "ca.ocsp_unreachable", "ca.issuer_unreachable"):
                assert fid not in ids, fid
            assert "ca.revocation_unavailable" not in ids
            errors = [
                e.error or ""
                for mx in report.mx.values()
                for s in mx.sessions.values()
                for e in s.endpoints
            ]
            assert len(errors) == 5
            assert all(e.startswith("not fetched from here") for e in errors), errors
            assert sum("private address" in e for e in errors) == 1  # port 80, loopback

            # the one explicit option lets an internal PKI be checked, without the userinfo
            listener.mode = "silent"
            await check(world, ca_file=ca_file, timeout=1.0, private_endpoints=True)
            assert listener.connections >= 3
    finally:
        await listener.stop()


async def test_userinfo_is_never_sent(tmp_path: Path) -> None:
    world = HostileWorld(DOMAIN)
    listener = EndlessHttp("endless")
    await listener.start(world.address(201))
    url = f"http://user:secret@{listener.host}:{listener.port}/ca"
    behaviour, ca_file = served_leaf(MX, tmp_path, ca_issuers=(url,))
    world.behaviours = [behaviour]
    try:
        async with world:
            await check(world, ca_file=ca_file, timeout=2.0, private_endpoints=True)
    finally:
        await listener.stop()
    assert listener.heads, "the caIssuers URL was not fetched at all"
    for head in listener.heads:
        assert b"authorization" not in head.lower()
        assert b"secret" not in head


async def test_a_host_with_100_silent_addresses_costs_a_few_timeouts(tmp_path: Path) -> None:
    from probes.net.dns import Resolver
    from probes.net.http import MAX_ADDRESSES, Fetcher
    from probes.net.trust import load_roots

    world = HostileWorld(DOMAIN)
    silent = [EndlessHttp("silent") for _ in range(100)]
    host = f"mta-sts.{DOMAIN}"
    try:
        for i, server in enumerate(silent):
            await server.start(world.address(100 + i), silent[0].port if i else 0)
        port = silent[0].port
        world.records = {(host, "A"): [s.host for s in silent]}
        async with world:
            timeout = 0.5
            opts = world.options(timeout=timeout, private_endpoints=True, https_port=port)
            fetcher = Fetcher(Resolver(world.resolver, timeout=timeout), opts, load_roots(opts))
            start = time.monotonic()
            try:
                result = await fetcher.get(f"https://{host}/.well-known/mta-sts.txt")
            finally:
                await fetcher.aclose()
            took = time.monotonic() - start
    finally:
        for server in silent:
            await server.stop()
    assert not result.ok and result.error == "timeout"
    # one deadline for the whole fetch: 2 x the timeout, not 100 x
    assert took < 2 * timeout + 1.0, f"{took:.1f} s"
    assert sum(s.connections for s in silent) <= MAX_ADDRESSES


# The child reports its own peak from /proc (VmHWM, in kB): getrusage's ru_maxrss would
# also count the forked test process's size from before exec.
_CHILD = """
import sys
from tui.cli import main
code = main(sys.argv[2:])
with open("/proc/self/status") as status:
    peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
with open(sys.argv[1], "w") as out:
    out.write(peak)
sys.exit(code)
"""


async def test_200_endless_crls_stay_under_200_mib(tmp_path: Path) -> None:
    world = HostileWorld(DOMAIN)
    listener = EndlessHttp("endless")
    await listener.start(world.address(202))
    crls = tuple(f"http://{listener.host}:{listener.port}/crl/{i}" for i in range(200))
    behaviour, ca_file = served_leaf(MX, tmp_path, crl=crls)
    world.behaviours = [behaviour]
    rss_file = tmp_path / "rss"
    try:
        async with world:
            ip, port = world.resolver
            args = [
                "check",
                DOMAIN,
                "--resolver",
                f"{ip}:{port}",
                "--port",
                str(world.smtp_port),
                "--ca-file",
                ca_file,
                "--timeout",
                "5",
                "--no-extra-probes",
                "--allow-private-endpoints",
                "--json",
            ]
            start = time.monotonic()
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _CHILD,
                str(rss_file),
                *args,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
            )
            out, err = await asyncio.wait_for(child.communicate(), 120)
            took = time.monotonic() - start
    finally:
        await listener.stop()
    assert err == b"", err.decode()
    peak_mib = int(rss_file.read_text()) / 1024
    assert peak_mib < 200, f"peak RSS {peak_mib:.0f} MiB"
    doc = json.loads(out)
    ids = {f["id"] for f in doc["findings"]}
    assert "ca.endpoint_not_fetched" in ids  # 196 URLs listed, not fetched
    assert listener.connections <= 4
    print(f"200 endless CRLs: peak RSS {peak_mib:.0f} MiB, {took:.1f} s")


async def test_a_proxy_is_not_asked_for_an_internal_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from probes.model.options import Options
    from probes.net.dns import Resolver
    from probes.net.http import Fetcher
    from probes.net.trust import Roots

    proxy = EndlessHttp("endless")
    await proxy.start(HostileWorld().address(203))
    monkeypatch.setenv("HTTP_PROXY", f"http://{proxy.host}:{proxy.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    fetcher = Fetcher(Resolver(("127.0.0.1", 9), timeout=0.5), Options(timeout=1), Roots([], ""))
    try:
        results = [
            await fetcher.get(url)
            for url in ("http://127.0.0.1/crl", "http://[::1]/crl", "http://localhost/crl")
        ]
    finally:
        await fetcher.aclose()
        await proxy.stop()
    assert proxy.connections == 0
    assert all(r.refused and "private address" in (r.error or "") for r in results)
