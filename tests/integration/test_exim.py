"""mxlens against a real Exim 4.96 (Debian's GnuTLS build), each case with its exact findings.

Every case starts a private Exim on 127.77.0.x and a free high port, and runs
`mxlens check DOMAIN --json --mx HOST:PORT` as a user would, with the lab's DNS server as
`--resolver` (MX, A, PTR and TLS-RPT records, zone marked DNSSEC-signed so DANE stays quiet
when there is no TLSA) and the lab PKI's roots as `--ca-file`. `--no-endpoints`: the CA
endpoints are the lab's business (tests/test_lab_scenarios.py), not Exim's.

PTR: every case publishes a forward-confirmed PTR for the Exim address except "no-ptr",
which asserts `dns.ptr_missing` (info) as the only finding besides its own.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from mxlens_lab.dns_server import DnsServer
from mxlens_lab.pki import PKI, Issued
from tests.integration import exim
from tests.integration.peers import run_mxlens

pytestmark = pytest.mark.integration

DOMAIN = "exim.lab.test"
MX = "mx.exim.lab.test"
DNS_ADDRESS = "127.77.0.1"
EHLO = "client.lab.test"
# Debian 12's Exim (GnuTLS "NORMAL") still accepts TLS 1.0 and 1.1; a careful admin sets this.
MODERN_ONLY = "NORMAL:-VERS-TLS1.0:-VERS-TLS1.1"


@pytest.fixture(scope="module", autouse=True)
def _exim_available() -> None:
    reason = exim.unavailable_reason()
    if reason:
        pytest.skip(reason)


@dataclass
class Case:
    name: str
    address: str
    expect: dict[str, str]  # finding id -> severity, exactly what mxlens must report
    exit_code: int
    cert: str | None = "good"  # "good", "expired", or None for no STARTTLS at all
    tls_require_ciphers: str | None = MODERN_ONLY
    ptr: bool = True
    extra_args: list[str] = field(default_factory=list)
    by_address: bool = False  # `--mx ADDR:PORT` instead of `--mx HOST:PORT`


CASES = [
    Case("healthy", "127.77.0.10", {}, 0),
    # Exim exactly as Debian ships it: STARTTLS works, TLS 1.0/1.1 still accepted.
    Case(
        "debian-default-tls",
        "127.77.0.11",
        {"tls.legacy_accepted": "warning"},
        1,
        tls_require_ciphers=None,
    ),
    # tls_advertise_hosts empty: Exim says nothing about STARTTLS.
    Case("no-starttls", "127.77.0.12", {"tls.starttls_not_offered": "error"}, 2, cert=None),
    Case("expired", "127.77.0.13", {"cert.expired": "error"}, 2, cert="expired"),
    # An opportunistic sender (Postfix `may`, Exchange Online without a connector) still
    # delivers to an expired certificate: the same fact is a warning, exit 1.
    Case(
        "expired-opportunistic",
        "127.77.0.14",
        {"cert.expired": "warning"},
        1,
        cert="expired",
        extra_args=["--policy", "opportunistic"],
    ),
    Case("no-ptr", "127.77.0.15", {"dns.ptr_missing": "info"}, 0, ptr=False),
    # `--mx ADDR:PORT`: the address is probed as given (no A lookup; PTR still asked). A
    # strict sender checks the name it connected to, here the address, which the
    # certificate does not carry. So does Postfix verify (smtp_tls_verify_cert_match =
    # hostname), so the verify policy, which stands for it too, calls it an error; EXO
    # CertificateValidation checks no name, so for that connector it is only worth knowing.
    Case("by-address", "127.77.0.16", {"cert.name_mismatch": "error"}, 2, by_address=True),
    Case(
        "by-address-verify",
        "127.77.0.17",
        {"cert.name_mismatch": "error"},
        2,
        by_address=True,
        extra_args=["--policy", "verify"],
    ),
    Case(
        "by-address-exo-certificate-validation",
        "127.77.0.18",
        {"cert.name_mismatch": "info"},
        0,
        by_address=True,
        extra_args=["--connector", "exo-certificate-validation"],
    ),
]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[PKI, Issued, Issued, Path]:
    """A root, an intermediate, a good and an expired leaf for MX, and the roots file."""
    pki = PKI("http://pki.exim.lab.test")
    root = pki.root("exim-root")
    inter = pki.intermediate("exim-inter", root)
    good = pki.leaf(inter, [MX])
    now = datetime.now(timezone.utc)
    expired = pki.leaf(
        inter, [MX], not_before=now - timedelta(days=120), not_after=now - timedelta(days=3)
    )
    roots = tmp_path_factory.mktemp("exim-pki") / "roots.pem"
    roots.write_bytes(pki.roots_pem())
    return pki, good, expired, roots


def _reverse(address: str) -> str:
    return ".".join(reversed(address.split("."))) + ".in-addr.arpa"


def _findings(report: dict[str, Any]) -> dict[str, str]:
    return {f["id"]: f["severity"] for f in report["findings"] if f["severity"] != "ok"}


def _describe(report: dict[str, Any], server: exim.EximServer) -> str:
    lines = [f"{f['severity']} {f['id']} {f['where']}: {f['summary']}" for f in report["findings"]]
    for mx in report["mx"]:
        for s in mx["sessions"]:
            lines += [f"  {t['dir']} {t['text']}" for t in s["transcript"]]
    return "\n".join(lines) + "\n" + server.logs()


async def _run_case(case: Case, pki: tuple[PKI, Issued, Issued, Path]) -> None:
    _, good, expired, roots = pki
    leaf = {"good": good, "expired": expired}.get(case.cert or "")
    records: dict[tuple[str, str], list[str]] = {
        (DOMAIN, "MX"): [f"10 {MX}."],
        (MX, "A"): [case.address],
        (f"_smtp._tls.{DOMAIN}", "TXT"): ['"v=TLSRPTv1; rua=mailto:tlsrpt@exim.lab.test"'],
    }
    if case.ptr:
        records[(_reverse(case.address), "PTR")] = [f"{MX}."]
    # The lab DNS plays a validating resolver for exim.lab.test (AD on every answer), so the
    # absent TLSA reads "signed, no DANE" and no dane.* finding muddles Exim's results.
    dns_server = DnsServer(records, signed_zones=[DOMAIN])
    await dns_server.start(DNS_ADDRESS, 0)
    try:
        server = await asyncio.to_thread(
            exim.start_exim,
            case.address,
            hostname=MX,
            cert_chain_pem=leaf.pem_chain() if leaf else None,
            key_pem=leaf.key_pem() if leaf else None,
            tls_require_ciphers=case.tls_require_ciphers,
        )
        try:
            code, report, stderr = await run_mxlens(
                DOMAIN,
                "--json",
                "--resolver",
                f"{DNS_ADDRESS}:{dns_server.port}",
                "--mx",
                f"{case.address if case.by_address else MX}:{server.port}",
                "--ca-file",
                str(roots),
                "--no-endpoints",
                "--timeout",
                "5",
                "--ehlo",
                EHLO,
                *case.extra_args,
            )
            detail = _describe(report, server)
        finally:
            await asyncio.to_thread(server.stop)
    finally:
        await dns_server.stop()

    assert _findings(report) == case.expect, f"{case.name}: stderr {stderr}\n{detail}"
    assert code == case.exit_code, detail
    assert report["exit_code"] == case.exit_code

    # Everything mxlens looked up went to the lab DNS, PTR included.
    asked = {(q["name"], q["rtype"]) for q in report["dns"]}
    assert (_reverse(case.address), "PTR") in asked
    [mx] = report["mx"]
    assert mx["host"] == (case.address if case.by_address else MX)
    assert mx["addresses"] == [case.address]
    assert mx["ptr"] == {case.address: [MX] if case.ptr else []}
    if case.by_address:
        assert not any(q["name"] == case.address for q in report["dns"]), report["dns"]

    [session] = mx["sessions"]
    assert (session["address"], session["port"]) == (case.address, server.port)
    server_lines = [t["text"] for t in session["transcript"] if t["dir"] == "S"]
    # Exim's own words, not a lab imitation: its greeting and its EHLO extensions.
    assert server_lines[0].startswith(f"220 {MX} ESMTP Exim 4."), detail
    assert f"250-{MX} Hello {EHLO} [127.0.0.1]" in server_lines, detail
    assert "250-PIPECONNECT" in server_lines, detail
    assert "250-CHUNKING" in server_lines, detail
    assert server_lines[-1] == f"221 {MX} closing connection", detail

    if case.cert is None:
        assert session["starttls"] is False
        assert "250-STARTTLS" not in server_lines
        assert session["tls"] is None
        return
    assert session["starttls"] is True
    assert "220 TLS go ahead" in server_lines, detail  # Exim's STARTTLS answer
    # STARTTLS is advertised once, before TLS (RFC 3207): Exim's EHLO inside TLS drops it.
    assert server_lines.count("250-STARTTLS") == 1, detail
    assert session["tls"]["version"] == "TLSv1.3"
    assert session["tls"]["forward_secrecy"] is True
    assert leaf is not None
    # The chain as Exim sent it: our leaf, then the intermediate.
    sent = [c["sha256"] for c in session["chain"]]
    assert sent == [hashlib.sha256(leaf.cert_der()).hexdigest(), sent[1]] and len(sent) == 2, sent
    versions = session["tls_versions"]
    legacy = {v: versions.get(v) for v in ("TLSv1", "TLSv1.1")}
    if case.tls_require_ciphers is None:
        # One ClientHello capped at 1.1 got 1.1: 1.0 was not asked alone.
        assert legacy == {"TLSv1": None, "TLSv1.1": True}, versions
    else:
        assert legacy == {"TLSv1": False, "TLSv1.1": False}, versions


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_exim_case(case: Case, pki: tuple[PKI, Issued, Issued, Path]) -> None:
    await _run_case(case, pki)
