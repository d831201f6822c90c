"""DANE against a real validating resolver: Unbound with a dnspython-signed zone.

One Unbound per module on 127.78.0.53 serves, as auth-zones it validates itself:
    dane.lab.test          signed at fixture time, its DS configured as trust anchor
    plain.lab.test         unsigned, under no trust anchor: insecure answers (no AD)
    78.127.in-addr.arpa    unsigned: PTR names for the SMTP addresses
and refuses everything else (`local-zone: "." refuse`), so nothing leaves the machine.

Each recipient domain has one MX host whose TLSA record (at `_<port>._tcp.<mx>`, the port
being probed) tells one DANE story; the SMTP peer behind every MX is one lab SmtpServer on
127.78.0.25 (one certificate that names every MX host but one), plus one case behind a real
Exim. mxlens runs as `mxlens check DOMAIN --json --resolver 127.78.0.53:PORT --port PORT`,
and every case asserts its exact findings.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.flags
import dns.rcode
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mxlens_lab.pki import PKI, Issued
from mxlens_lab.smtp_server import Behaviour, SmtpServer
from tests.integration import exim, unbound
from tests.integration.peers import run_mxlens

pytestmark = pytest.mark.integration

RESOLVER_ADDRESS = "127.78.0.53"
SMTP_ADDRESS = "127.78.0.25"
EXIM_ADDRESS = "127.78.0.26"
SIGNED = "dane.lab.test"
UNSIGNED = "plain.lab.test"
EHLO = "client.lab.test"
TLSRPT = '"v=TLSRPTv1; rua=mailto:tlsrpt@lab.test"'
# Every MX host the shared certificate names; mx-ee-other is left out on purpose.
CERT_NAMES = [
    f"mx-match.{SIGNED}",
    f"mx-mismatch.{SIGNED}",
    f"mx-bogus.{SIGNED}",
    f"mx-nodane.{SIGNED}",
    f"mx-exim.{SIGNED}",
    f"mx-tlsa.{UNSIGNED}",
    f"mx-notlsa.{UNSIGNED}",
]


@dataclass(frozen=True)
class World:
    unbound: unbound.UnboundServer
    smtp_port: int
    exim_port: int
    leaf: Issued
    roots: Path


@dataclass(frozen=True)
class Case:
    domain: str
    expect: dict[str, str]  # finding id -> severity
    exit_code: int
    tlsa_status: str  # what the TLSA lookup must come back as
    tlsa_ad: bool  # and whether Unbound set the AD bit on it
    matched: bool = False  # a TLSA record matched the chain


CASES = {
    # DANE-EE 3 1 1 of the server key, validated: nothing to say.
    "match": Case(f"match.{SIGNED}", {}, 0, "NOERROR", True, matched=True),
    # A validated TLSA record that is not the server's key: DANE senders refuse (4.7.323).
    "mismatch": Case(f"mismatch.{SIGNED}", {"dane.tlsa_mismatch": "error"}, 2, "NOERROR", True),
    # The TLSA record was changed after signing: Unbound answers SERVFAIL (bogus).
    "bogus": Case(f"bogus.{SIGNED}", {"dane.lookup_failed": "error"}, 2, "SERVFAIL", False),
    # Signed zone, no TLSA: a validated NODATA/NXDOMAIN, so DANE simply does not apply.
    "signed-no-tlsa": Case(f"nodane.{SIGNED}", {}, 0, "NXDOMAIN", True),
    # A DANE-EE match makes the certificate's names moot (RFC 7672 3.1.1): the name
    # mismatch is only worth knowing.
    "ee-name-moot": Case(
        f"eeother.{SIGNED}", {"cert.name_mismatch": "info"}, 0, "NOERROR", True, matched=True
    ),
    # TLSA records in an unsigned zone: present, not validated, ignored by senders.
    "insecure": Case(f"tlsa.{UNSIGNED}", {"dane.insecure": "info"}, 0, "NOERROR", False),
    # Unsigned zone, no TLSA at all.
    "unsigned": Case(f"notlsa.{UNSIGNED}", {"dane.dnssec_unsigned": "info"}, 0, "NXDOMAIN", False),
}


def _spki_sha256(issued: Issued) -> str:
    spki = issued.cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def _reverse_owner(address: str) -> str:
    """The owner name of address's PTR, relative to 78.127.in-addr.arpa."""
    a, b, c, d = address.split(".")
    return f"{d}.{c}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    reason = unbound.unavailable_reason()
    if reason:
        pytest.skip(reason)
    pki = PKI("http://pki.lab.test")
    root = pki.root("dane-root")
    inter = pki.intermediate("dane-inter", root)
    leaf = pki.leaf(inter, CERT_NAMES)
    other = pki.leaf(inter, ["someone-else.lab.test"])
    roots = tmp_path_factory.mktemp("dane-pki") / "roots.pem"
    roots.write_bytes(pki.roots_pem())

    smtp_port = exim.free_port(SMTP_ADDRESS)
    exim_port = exim.free_port(EXIM_ADDRESS)
    good, wrong = _spki_sha256(leaf), _spki_sha256(other)
    p, ep = smtp_port, exim_port
    signed = [
        "match MX 10 mx-match",
        "mismatch MX 10 mx-mismatch",
        "bogus MX 10 mx-bogus",
        "nodane MX 10 mx-nodane",
        "eeother MX 10 mx-ee-other",
        "exim MX 10 mx-exim",
        f"_{p}._tcp.mx-match TLSA 3 1 1 {good}",
        f"_{p}._tcp.mx-mismatch TLSA 3 1 1 {wrong}",
        f"_{p}._tcp.mx-bogus TLSA 3 1 1 {good}",
        f"_{p}._tcp.mx-ee-other TLSA 3 1 1 {good}",
        f"_{ep}._tcp.mx-exim TLSA 3 1 1 {good}",
        f"mx-exim A {EXIM_ADDRESS}",
    ]
    for host in ("mx-match", "mx-mismatch", "mx-bogus", "mx-nodane", "mx-ee-other"):
        signed.append(f"{host} A {SMTP_ADDRESS}")
    for name in ("match", "mismatch", "bogus", "nodane", "eeother", "exim"):
        signed.append(f"_smtp._tls.{name} TXT {TLSRPT}")
    plain = [
        "tlsa MX 10 mx-tlsa",
        "notlsa MX 10 mx-notlsa",
        f"mx-tlsa A {SMTP_ADDRESS}",
        f"mx-notlsa A {SMTP_ADDRESS}",
        f"_{p}._tcp.mx-tlsa TLSA 3 1 1 {good}",
        f"_smtp._tls.tlsa TXT {TLSRPT}",
        f"_smtp._tls.notlsa TXT {TLSRPT}",
    ]
    reverse = [
        f"{_reverse_owner(SMTP_ADDRESS)} PTR mx-match.{SIGNED}.",
        f"{_reverse_owner(EXIM_ADDRESS)} PTR mx-exim.{SIGNED}.",
    ]
    server = unbound.start_unbound(
        RESOLVER_ADDRESS,
        [
            unbound.Zone(f"{SIGNED}.", signed, signed=True, corrupt=[f"_{p}._tcp.mx-bogus"]),
            unbound.Zone(f"{UNSIGNED}.", plain),
            unbound.Zone("78.127.in-addr.arpa.", reverse),
        ],
    )
    try:
        yield World(server, smtp_port, exim_port, leaf, roots)
    finally:
        server.stop()


async def _check(world: World, domain: str, port: int) -> tuple[int, dict[str, Any]]:
    code, report, stderr = await run_mxlens(
        domain,
        "--json",
        "--resolver",
        world.unbound.resolver,
        "--port",
        str(port),
        "--ca-file",
        str(world.roots),
        "--no-endpoints",
        "--timeout",
        "5",
        "--ehlo",
        EHLO,
    )
    assert not stderr.strip(), stderr
    return code, report


def _describe(report: dict[str, Any], world: World) -> str:
    lines = [f"{f['severity']} {f['id']} {f['where']}: {f['summary']}" for f in report["findings"]]
    lines += [
        f"  dns {q['name']} {q['rtype']} {q['status']} ad={q['authenticated']}"
        for q in report["dns"]
    ]
    return "\n".join(lines) + "\n--- unbound\n" + world.unbound.log()


def _assert_case(case: Case, code: int, report: dict[str, Any], port: int, world: World) -> None:
    detail = _describe(report, world)
    got = {f["id"]: f["severity"] for f in report["findings"] if f["severity"] != "ok"}
    assert got == case.expect, detail
    assert code == case.exit_code == report["exit_code"], detail

    [mx] = report["mx"]
    tlsa_name = f"_{port}._tcp.{mx['host']}"
    [tlsa] = [q for q in report["dns"] if q["rtype"] == "TLSA"]
    assert tlsa["name"] == tlsa_name, detail
    assert (tlsa["status"], tlsa["authenticated"]) == (case.tlsa_status, case.tlsa_ad), detail
    # The MX answer of a signed zone is validated too; an unsigned one never is.
    [mx_query] = [q for q in report["dns"] if q["rtype"] == "MX"]
    assert mx_query["authenticated"] is case.domain.endswith(SIGNED), detail

    [session] = mx["sessions"]
    assert session["starttls"] is True and session["tls"] is not None, detail
    dane = session["dane"]
    assert dane is not None, detail
    assert (dane["matched"] is not None) is case.matched, dane
    if case.matched:
        assert (
            dane["matched"]["usage"],
            dane["matched"]["selector"],
            dane["matched"]["mtype"],
        ) == (3, 1, 1)
    # PTR answers came from Unbound's reverse zone and confirm forward.
    assert not any(f["id"].startswith("dns.ptr") for f in report["findings"]), detail


@pytest.fixture
async def smtp(world: World) -> Any:
    server = SmtpServer(
        SMTP_ADDRESS,
        world.smtp_port,
        Behaviour(
            hostname=f"mx-match.{SIGNED}",
            cert_chain_pem=world.leaf.pem_chain(),
            key_pem=world.leaf.key_pem(),
        ),
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
    # mxlens only looks: no MAIL, RCPT or DATA ever reached the server.
    assert server.log.forbidden == []


@pytest.mark.parametrize("name", list(CASES))
async def test_dane_case(name: str, world: World, smtp: SmtpServer) -> None:
    case = CASES[name]
    code, report = await _check(world, case.domain, world.smtp_port)
    _assert_case(case, code, report, world.smtp_port, world)


def test_unbound_itself_validates(world: World) -> None:
    """The fixture's premise, asked directly: AD from Unbound's own validation, SERVFAIL for
    the broken signature, no AD outside the trust anchor, and nothing answered for the
    internet."""
    p = world.smtp_port
    good = world.unbound.query(f"_{p}._tcp.mx-match.{SIGNED}", "TLSA")
    assert good.rcode() == dns.rcode.NOERROR and good.flags & dns.flags.AD
    assert any(rrset.rdtype == 46 for rrset in good.answer)  # RRSIG alongside the TLSA
    bogus = world.unbound.query(f"_{p}._tcp.mx-bogus.{SIGNED}", "TLSA")
    assert bogus.rcode() == dns.rcode.SERVFAIL
    insecure = world.unbound.query(f"_{p}._tcp.mx-tlsa.{UNSIGNED}", "TLSA")
    assert insecure.rcode() == dns.rcode.NOERROR and not insecure.flags & dns.flags.AD
    outside = world.unbound.query("www.example.com", "A")
    assert outside.rcode() == dns.rcode.REFUSED
    assert "validation failure" in world.unbound.log()


async def test_dane_match_behind_exim(world: World) -> None:
    """The same validated DANE-EE match, served by a real Exim (GnuTLS) instead of the lab."""
    reason = exim.unavailable_reason()
    if reason:
        pytest.skip(reason)
    server = await asyncio.to_thread(
        exim.start_exim,
        EXIM_ADDRESS,
        hostname=f"mx-exim.{SIGNED}",
        cert_chain_pem=world.leaf.pem_chain(),
        key_pem=world.leaf.key_pem(),
        port=world.exim_port,
        tls_require_ciphers="NORMAL:-VERS-TLS1.0:-VERS-TLS1.1",
    )
    try:
        code, report = await _check(world, f"exim.{SIGNED}", world.exim_port)
    finally:
        await asyncio.to_thread(server.stop)
    case = Case(f"exim.{SIGNED}", {}, 0, "NOERROR", True, matched=True)
    _assert_case(case, code, report, world.exim_port, world)
    [session] = report["mx"][0]["sessions"]
    assert session["transcript"][0]["text"].startswith(f"220 mx-exim.{SIGNED} ESMTP Exim 4.")
