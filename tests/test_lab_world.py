"""The lab as a whole: it starts and stops cleanly, its DNS serves every scenario domain, its
MX addresses behave as the scenarios declare, and lab.options() points mxlens at it.

Real sockets on loopback only; DNS questions are asked with dnspython, SMTP with a blocking
socket in a worker thread (so the client does not share the lab's event loop).
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from mxlens_lab import scenarios as scenario_table
from mxlens_lab.scenarios import SCENARIOS, STEPS
from mxlens_lab.world import Lab, LabThread
from probes.model.findings import catalog
from probes.net.dns import to_ascii

pytestmark = [
    pytest.mark.lab,
    pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning"),
]


async def ask(lab: Lab, name: str, rtype: str) -> dns.message.Message:
    q = dns.message.make_query(name, rtype, want_dnssec=True)
    ip, port = lab.resolver
    return await dns.asyncquery.udp(q, ip, port=port, timeout=2)


def answers(msg: dns.message.Message, rtype: str) -> list[str]:
    want = dns.rdatatype.from_text(rtype)
    return [rd.to_text() for rrset in msg.answer if rrset.rdtype == want for rd in rrset]


def greet(address: str, port: int, timeout: float = 2.0) -> str:
    """Connect and read the first bytes; 'refused' / 'timeout' when it cannot connect."""
    try:
        s = socket.create_connection((address, port), timeout=timeout)
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"
    try:
        s.settimeout(timeout)
        try:
            return s.recv(200).decode("utf-8", "replace")
        except TimeoutError:
            return "silent"
    finally:
        s.close()


# ------------------------------------------------------------------------------ the table


def test_every_catalog_id_is_staged_somewhere() -> None:
    staged = scenario_table.findings_staged()
    missing = sorted(set(catalog()) - set(staged) - set(scenario_table.NOT_STAGED))
    assert missing == []
    unknown = sorted(set(staged) - set(catalog()))
    assert unknown == []


def test_scenario_table_is_consistent() -> None:
    doc = scenario_table.__doc__ or ""
    for fid, names in scenario_table.findings_staged().items():
        assert fid in doc, f"{fid} missing from the module docstring table"
        for n in names:
            assert n in doc
    for s in SCENARIOS.values():
        assert s.breaks is None or s.breaks in STEPS, s.name
        assert to_ascii(s.domain).endswith(".lab.test")
        assert s.description
    assert SCENARIOS["healthy"].expect == frozenset() and SCENARIOS["healthy"].breaks is None
    for required in ("hostile", "silent", "endless", "idn"):
        assert required in SCENARIOS
    assert to_ascii(SCENARIOS["idn"].domain) == "xn--bcher-kva.lab.test"
    assert len({to_ascii(s.domain) for s in SCENARIOS.values()}) == len(SCENARIOS)


# ------------------------------------------------------------------------------ start / stop


async def test_lab_starts_and_stops_twice_in_a_row() -> None:
    for _ in range(2):
        lab = Lab(["healthy", "connect-refused"])
        await lab.start()
        ca_file = lab.ca_file
        address = lab.host_plans("healthy")[0].address
        port = lab.smtp_port
        assert Path(ca_file).read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
        assert (await asyncio.to_thread(greet, address, port)).startswith("220 ")
        await lab.stop()
        assert not os.path.exists(ca_file)
        assert await asyncio.to_thread(greet, address, port) == "refused"
        await lab.stop()  # a second stop is harmless


async def test_two_labs_at_once_do_not_collide() -> None:
    async with Lab(["healthy"]) as a, Lab(["healthy"]) as b:
        assert a.resolver != b.resolver
        addr_a, addr_b = a.host_plans("healthy")[0].address, b.host_plans("healthy")[0].address
        ra = await ask(a, "mx1.healthy.lab.test", "A")
        rb = await ask(b, "mx1.healthy.lab.test", "A")
        assert answers(ra, "A") == [addr_a] and answers(rb, "A") == [addr_b]
        assert (await asyncio.to_thread(greet, addr_a, a.smtp_port)).startswith("220 ")
        assert (await asyncio.to_thread(greet, addr_b, b.smtp_port)).startswith("220 ")


async def test_unknown_scenario_is_refused() -> None:
    with pytest.raises(KeyError):
        Lab(["no-such-scenario"])


# ------------------------------------------------------------------------------ the whole lab


@pytest.fixture(scope="module")
def whole_lab():
    # One lab with every scenario, on its own loop in a thread, shared by the tests below.
    with LabThread() as lab:
        yield lab


async def test_every_scenario_domain_resolves(whole_lab: Lab) -> None:
    lab = whole_lab
    for s in lab.scenarios.values():
        d = to_ascii(s.domain)
        msg = await ask(lab, d, "MX")
        mx = answers(msg, "MX")
        mode = s.stage.mx_record
        if mode == "nxdomain":
            assert msg.rcode() == dns.rcode.NXDOMAIN, s.name
            continue
        if mode == "servfail":
            assert msg.rcode() == dns.rcode.SERVFAIL, s.name
            continue
        assert msg.rcode() == dns.rcode.NOERROR, s.name
        assert bool(msg.flags & dns.flags.AD) == s.stage.signed, s.name
        if mode == "none":
            assert mx == [], s.name
            a = answers(await ask(lab, d, "A"), "A")
            assert a == [lab.addresses[d]], s.name
        elif mode == "null":
            assert mx == ["0 ."], s.name
        else:
            assert len(mx) == len(s.stage.mx), s.name
        # Every MX host that should have an address has exactly the one the lab gave it.
        for plan in lab.host_plans(s.name):
            if plan.spec.address == "none" or mode == "ip":
                continue
            got = answers(await ask(lab, plan.host, "A"), "A")
            assert got == [plan.address], s.name
        # The policy records of the baseline, unless the scenario changes them.
        sts = answers(await ask(lab, f"_mta-sts.{d}", "TXT"), "TXT")
        assert [t.strip('"') for t in sts] == list(s.stage.mtasts_records), s.name
        rpt = answers(await ask(lab, f"_smtp._tls.{d}", "TXT"), "TXT")
        assert len(rpt) == (0 if s.stage.tlsrpt is None else 1), s.name


async def test_outside_names_are_refused(whole_lab: Lab) -> None:
    msg = await ask(whole_lab, "example.com", "A")
    assert msg.rcode() == dns.rcode.REFUSED


async def test_ptr_records_follow_the_scenarios(whole_lab: Lab) -> None:
    lab = whole_lab
    for name, want in (("healthy", "ok"), ("ptr-missing", "missing"), ("ptr-mismatch", "mismatch")):
        plan = lab.host_plans(name)[0]
        rev = dns.reversename.from_address(plan.address)
        msg = await ask(lab, rev.to_text(), "PTR")
        ptr = answers(msg, "PTR")
        if want == "ok":
            assert ptr == [plan.host + "."]
        elif want == "missing":
            assert msg.rcode() == dns.rcode.NXDOMAIN
        else:
            assert len(ptr) == 1 and ptr[0] != plan.host + "."
            back = answers(await ask(lab, ptr[0], "A"), "A")
            assert back and plan.address not in back


async def test_tlsa_records(whole_lab: Lab) -> None:
    lab = whole_lab
    port = lab.smtp_port
    ok = await ask(lab, f"_{port}._tcp.mx1.dane-ok.lab.test", "TLSA")
    assert answers(ok, "TLSA")[0].startswith("3 1 1 ") and ok.flags & dns.flags.AD
    insecure = await ask(lab, f"_{port}._tcp.mx1.dane-insecure.lab.test", "TLSA")
    assert answers(insecure, "TLSA") and not insecure.flags & dns.flags.AD
    bogus = await ask(lab, "_25._tcp.mx1.dane-lookup-failed.lab.test", "TLSA")
    assert bogus.rcode() == dns.rcode.SERVFAIL
    unusable = await ask(lab, f"_{port}._tcp.mx1.dane-unusable.lab.test", "TLSA")
    assert answers(unusable, "TLSA")[0].startswith("0 0 1 ")
    none = await ask(lab, f"_{port}._tcp.mx1.healthy.lab.test", "TLSA")
    assert answers(none, "TLSA") == [] and none.flags & dns.flags.AD


async def test_mx_addresses_accept_connections_as_declared(whole_lab: Lab) -> None:
    lab = whole_lab
    port = lab.smtp_port
    expected = {
        "healthy": "220 mx1.healthy.lab.test ESMTP",
        "connect-refused": "refused",
        "connect-timeout": "timeout",
        "silent": "silent",
        "greeting-rejected": "554 ",
        "rate-limited": "421 ",
        "hostile": "220 [bold red]",
        "endless": "2",  # dripping: one byte at a time
    }
    for name, want in expected.items():
        got = await asyncio.to_thread(greet, lab.host_plans(name)[0].address, port, 1.0)
        assert got.startswith(want), f"{name}: {got!r}"
    # Every scenario that has an SMTP server greets on the one lab port.
    for s in lab.scenarios.values():
        for plan in lab.host_plans(s.name):
            if plan.server is None or plan.spec.server or plan.spec.address != "smtp":
                continue
            got = await asyncio.to_thread(greet, plan.address, port, 2.0)
            assert got.startswith(f"220 {plan.host} "), f"{s.name}: {got!r}"


def starttls_chain(address: str, port: int, host: str, ca_file: str) -> tuple[str, int]:
    """STARTTLS with verification against the lab roots; (TLS version, chain length)."""
    with socket.create_connection((address, port), timeout=3) as raw:
        f = raw.makefile("rb")
        f.readline()
        raw.sendall(b"EHLO test.example\r\n")
        while f.readline()[3:4] == b"-":
            pass
        raw.sendall(b"STARTTLS\r\n")
        assert f.readline().startswith(b"220")
        ctx = ssl.create_default_context(cafile=ca_file)
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            chain = tls._sslobj.get_unverified_chain()  # type: ignore[union-attr]
            return tls.version() or "", len(chain or [])


async def test_healthy_chain_verifies_against_the_lab_ca_file(whole_lab: Lab) -> None:
    lab = whole_lab
    for name in ("healthy", "idn", "pool-inconsistent"):
        plan = lab.host_plans(name)[-1]
        version, n = await asyncio.to_thread(
            starttls_chain, plan.address, lab.smtp_port, plan.host, lab.ca_file
        )
        assert version == "TLSv1.3" and n == 2, name
    plan = lab.host_plans("incomplete-chain")[0]
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.to_thread(starttls_chain, plan.address, lab.smtp_port, plan.host, lab.ca_file)


async def test_options_point_at_the_lab(whole_lab: Lab) -> None:
    lab = whole_lab
    opts = lab.options("expected-name-mismatch", timeout=1.5)
    assert opts.resolver == lab.resolver
    assert opts.port == lab.smtp_port
    assert opts.ca_file == lab.ca_file and os.path.exists(opts.ca_file)
    assert opts.https_port == lab.https_port
    assert opts.timeout == 1.5
    assert opts.expect_name == "mail.partner.example"
    assert lab.options().timeout == 2.0 and lab.options().expect_name is None
    assert lab.scenario_for("BÜCHER.lab.test.") is lab.scenarios["idn"]
    assert lab.scenario_for("xn--bcher-kva.lab.test") is lab.scenarios["idn"]
    assert lab.scenario_for("nowhere.example") is None


async def test_probes_resolver_and_fetcher_reach_the_lab(whole_lab: Lab) -> None:
    """The engine's own resolver gets lab answers, and the MTA-STS policy is served."""
    from probes.net.dns import Resolver

    lab = whole_lab
    r = Resolver(lab.resolver, timeout=2)
    a = await r.query("mx1.healthy.lab.test", "A")
    assert a.status == "NOERROR" and a.authenticated
    assert await r.resolve_host("mta-sts.healthy.lab.test") == [lab.https.host]  # type: ignore[union-attr]

    def fetch() -> bytes:
        ctx = ssl.create_default_context(cafile=lab.ca_file)
        assert lab.https is not None and lab.https.host is not None
        with socket.create_connection((lab.https.host, lab.https_port), timeout=3) as raw:
            with ctx.wrap_socket(raw, server_hostname="mta-sts.healthy.lab.test") as s:
                s.sendall(
                    b"GET /.well-known/mta-sts.txt HTTP/1.1\r\n"
                    b"Host: mta-sts.healthy.lab.test\r\nConnection: close\r\n\r\n"
                )
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
                return data

    body = await asyncio.to_thread(fetch)
    assert body.startswith(b"HTTP/1.1 200")
    assert b"mode: enforce" in body and b"mx: mx1.healthy.lab.test" in body


def test_foreground_runner_prints_what_to_run(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mxlens_lab", "--scenario", "healthy", "--scenario", "no-starttls"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Ready"):
                break
        text = "".join(lines)
        assert text.startswith("resolver  127.") and "SMTP " in text
        assert "healthy.lab.test" in text and "no-starttls.lab.test" in text
        assert "mxlens check DOMAIN --resolver 127." in text
        assert "bücher" not in text  # only the scenarios asked for
    finally:
        proc.send_signal(2)  # Ctrl+C
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""


async def test_options_for_keeps_what_the_user_set_and_guards_the_plumbing() -> None:
    from mxlens_lab.world import Lab
    from probes.model.errors import CheckError
    from probes.model.options import Options

    async with Lab(scenarios=["expected-name-mismatch"]) as lab:
        domain = lab.scenarios["expected-name-mismatch"].domain
        # Nothing given: the lab's plumbing and the scenario's own options.
        plain = lab.options_for(domain, Options())
        assert plain.resolver == lab.resolver and plain.port == lab.smtp_port
        assert plain.expect_name == lab.scenarios["expected-name-mismatch"].options["expect_name"]
        # Given explicitly, even when equal to a default: the user's value wins.
        chosen = Options(
            policy="verify",
            timeout=10.0,
            endpoints=False,
            given=frozenset({"policy", "timeout", "endpoints"}),
        )
        merged = lab.options_for(domain, chosen)
        assert (merged.policy, merged.timeout, merged.endpoints) == ("verify", 10.0, False)
        assert merged.resolver == lab.resolver
        # The lab owns where things are.
        with pytest.raises(CheckError, match="--ca-file"):
            lab.options_for(domain, Options(ca_file="/x.pem", given=frozenset({"ca_file"})))
