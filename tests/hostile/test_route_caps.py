"""A hostile domain's route: 1,000 MX records, 100 addresses, a server that never answers.
mxlens probes what a real sender would (a few hosts, a few addresses each), keeps its
sockets bounded, and ends every diagnosis by one overall deadline, always with a report."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path

import pytest

from mxlens_lab.smtp_server import Behaviour
from probes.diagnose import MAX_ADDRESSES_PER_HOST, MAX_MX_HOSTS, diagnose
from probes.model.events import DiagnosisFinished
from probes.report import Report
from tests.hostile.peers import HostileWorld

pytestmark = pytest.mark.lab

DOMAIN = "hostile.test"
FD_LIMIT = 1024


async def test_1000_mx_under_a_1024_descriptor_limit_give_a_report() -> None:
    world = HostileWorld(DOMAIN, [Behaviour(hostname=f"mx1.{DOMAIN}")])
    mx = [f"{i} mx{i}.{DOMAIN}." for i in range(1, 1001)]
    world.records = {(DOMAIN, "MX"): mx}
    world.records.update({(f"mx{i}.{DOMAIN}", "A"): [world.address(2)] for i in range(2, 1001)})
    async with world:
        out, err, code = await _check_in_child(world, FD_LIMIT, "--timeout", "3", "--no-endpoints")
    assert err == b"", err.decode()
    assert code in (0, 1, 2)
    doc = json.loads(out)
    assert len(doc["mx"]) == MAX_MX_HOSTS
    capped = [f for f in doc["findings"] if f["id"] == "dns.mx_not_probed"]
    assert len(capped) == 1 and "1000 MX hosts" in capped[0]["summary"]
    assert "and 987 more" in capped[0]["summary"]
    assert capped[0]["severity"] == "info"


async def test_running_out_of_descriptors_gives_findings_not_an_internal_error() -> None:
    # 32 descriptors: Python and the resolver take most, so sockets fail with EMFILE.
    world = HostileWorld(DOMAIN, [Behaviour(hostname=f"mx1.{DOMAIN}")])
    world.records = {(DOMAIN, "MX"): [f"{i} mx{i}.{DOMAIN}." for i in range(1, 11)]}
    world.records.update(
        {(f"mx{i}.{DOMAIN}", "A"): [world.address(2), world.address(3)] for i in range(2, 11)}
    )
    async with world:
        out, err, code = await _check_in_child(world, 32, "--timeout", "1")
    assert err == b"", err.decode()
    assert code in (0, 1, 2)
    ids = {f["id"] for f in json.loads(out)["findings"]}
    assert ids, "a report with findings"


async def _check_in_child(
    world: HostileWorld, fd_limit: int, *args: str
) -> tuple[bytes, bytes, int]:
    ip, port = world.resolver

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tui.cli",
        "check",
        DOMAIN,
        "--resolver",
        f"{ip}:{port}",
        "--port",
        str(world.smtp_port),
        "--no-extra-probes",
        "--json",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=limit,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    out, err = await asyncio.wait_for(child.communicate(), 120)
    return out, err, child.returncode if child.returncode is not None else -1


async def test_a_host_with_100_addresses_is_probed_on_a_few() -> None:
    world = HostileWorld(DOMAIN, [Behaviour(hostname=f"mx1.{DOMAIN}", silent=True)])
    addresses = [world.address(2)] + [world.address(100 + i) for i in range(99)]
    world.records = {(f"mx1.{DOMAIN}", "A"): addresses}
    async with world:
        opts = world.options(timeout=0.5, endpoints=False)
        report = Report(DOMAIN, opts)
        start = time.monotonic()
        async for event in diagnose(DOMAIN, opts):
            report.add(event)
        took = time.monotonic() - start
    sessions = report.mx[f"mx1.{DOMAIN}"].sessions
    assert len(sessions) == MAX_ADDRESSES_PER_HOST
    assert "dns.mx_not_probed" in {f.id for f in report.findings}
    assert took < 10, f"{took:.1f} s"


async def test_the_overall_deadline_ends_a_diagnosis_with_a_report() -> None:
    # A server that never says a word and a per-step timeout longer than the deadline.
    async with HostileWorld(DOMAIN, [Behaviour(hostname=f"mx1.{DOMAIN}", silent=True)]) as w:
        opts = w.options(timeout=30.0, deadline=1.0, endpoints=False)
        report = Report(DOMAIN, opts)
        start = time.monotonic()
        finished = None
        async for event in diagnose(DOMAIN, opts):
            report.add(event)
            if isinstance(event, DiagnosisFinished):
                finished = event
        took = time.monotonic() - start
    assert took < 3.0, f"{took:.1f} s"
    assert finished is not None
    found = {f.id: f for f in report.findings}
    assert found["check.deadline_reached"].severity == "warning"
    assert report.exit_code() in (1, 2)
