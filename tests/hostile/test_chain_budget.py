"""A hostile SMTP server chooses the chain it sends: path building has a budget and runs off
the event loop, and a certificate mxlens cannot parse is never graded "OK"."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from mxlens_lab.smtp_server import Behaviour
from probes.diagnose import diagnose
from probes.interpret.connectors import failing_step, judge
from probes.report import Report
from tests.hostile.peers import HostileWorld
from tests.support.pki import Issued, ec_key, issue

pytestmark = pytest.mark.lab

DOMAIN = "hostile.test"
MX = f"mx1.{DOMAIN}"


def _key_pem(issued: Issued) -> bytes:
    return bytes(issued.key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))


def same_name_cas(count: int) -> tuple[bytes, bytes]:
    """A leaf issued by "Hostile CA", and `count` CA certificates that all share that subject
    name and one key, so each one verifies as the issuer of every other (PEM chain, key)."""
    key = ec_key()
    cas = [issue("Hostile CA", key=key, ca=True, serial=1000 + i) for i in range(count)]
    leaf = issue(MX, cas[0])
    return leaf.pem + b"".join(ca.pem for ca in cas), _key_pem(leaf)


async def run(world: HostileWorld, **options: object) -> tuple[Report, float]:
    opts = world.options(endpoints=False, **options)
    report = Report(DOMAIN, opts)
    worst_gap = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst_gap
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            worst_gap = max(worst_gap, now - last)
            last = now

    tick = asyncio.create_task(ticker())
    try:
        async for event in diagnose(DOMAIN, opts):
            report.add(event)
    finally:
        done.set()
        await tick
    return report, worst_gap


@pytest.mark.parametrize("count", [20, 200])
async def test_same_name_cas_are_judged_in_under_two_seconds(count: int) -> None:
    chain, key = same_name_cas(count)
    async with HostileWorld(
        DOMAIN, [Behaviour(hostname=MX, cert_chain_pem=chain, key_pem=key)]
    ) as w:
        start = time.monotonic()
        report, worst_gap = await run(w, timeout=5.0)
        took = time.monotonic() - start
    assert took < 2.0, f"{count} same-name CAs took {took:.1f} s"
    # the event loop (the UI's) never waited long for the chain work
    assert worst_gap < 0.5, f"the event loop stalled for {worst_gap:.2f} s"
    ids = {f.id: f for f in report.findings}
    assert "cert.untrusted" in ids and ids["cert.untrusted"].severity == "error"
    assert report.exit_code() == 2


def ber_boolean_leaf(tmp_path: Path) -> tuple[bytes, bytes, str]:
    """A leaf whose basicConstraints encodes TRUE as 0x01 (BER, not DER): OpenSSL serves and
    accepts it, cryptography cannot parse its extensions. Returns (chain, key, CA file)."""
    root = issue("Hostile Root", ca=True)
    leaf = issue(MX, root, ca=True)
    tbs = leaf.cert.tbs_certificate_bytes
    at = tbs.rfind(bytes.fromhex("30030101ff"))
    assert at > 0
    tbs = tbs[:at] + bytes.fromhex("3003010101") + tbs[at + 5 :]
    der = leaf.der
    alg_at = der.index(leaf.cert.tbs_certificate_bytes) + len(leaf.cert.tbs_certificate_bytes)
    alg = der[alg_at : alg_at + 2 + der[alg_at + 1]]
    signature = root.key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    bad = _tlv(0x30, tbs + alg + _tlv(0x03, b"\x00" + signature))
    import base64

    pem = (
        b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(bad) + b"-----END CERTIFICATE-----\n"
    )
    ca_file = tmp_path / "root.pem"
    ca_file.write_bytes(root.pem)
    return pem + root.pem, _key_pem(leaf), str(ca_file)


def _tlv(tag: int, contents: bytes) -> bytes:
    n = len(contents)
    if n < 0x80:
        return bytes([tag, n]) + contents
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + contents


async def test_an_unparseable_leaf_is_never_ok(tmp_path: Path) -> None:
    chain, key, ca_file = ber_boolean_leaf(tmp_path)
    behaviour = Behaviour(hostname=MX, cert_chain_pem=chain, key_pem=key)
    async with HostileWorld(DOMAIN, [behaviour]) as w:
        report, _ = await run(w, ca_file=ca_file, policy="verify")
    found = {f.id: f for f in report.findings}
    assert "cert.unparseable" in found, sorted(found)
    assert found["cert.unparseable"].severity == "error"
    assert report.exit_code() == 2
    result = judge(report, "exo-certificate-validation")
    assert not result.delivers
    step = failing_step(result.walk, result.profile)
    assert step is not None and step.name == "chain_trusted"
