"""Cross-check: mxlens and `openssl s_client` must tell the same story about each Postfix.

For every case that gets as far as TLS, the same Postfix instance is asked twice: once by the
engine (probes.diagnose), once by

    openssl s_client -starttls smtp -connect ADDR:PORT -showcerts -CAfile ROOTS
                     -servername MX -verify_hostname MX

and the facts are compared field by field:

- protocol version: "New, TLSv1.3, Cipher is ..." against TlsNegotiated.version;
- cipher: both sides use OpenSSL's names (Python's SSLSocket.cipher() reports OpenSSL names,
  and so does s_client: e.g. ECDHE-ECDSA-AES256-GCM-SHA384 for TLS 1.2, TLS_AES_256_GCM_SHA384
  for TLS 1.3), so they are compared as strings, no mapping. Postfix picks the cipher from
  the client's list in the client's order (tls_preempt_cipherlist = no); both clients put the
  same suite first for these ECDSA certificates, and a difference would show here;
- key-exchange group: "Server Temp Key: X25519, 253 bits" / "ECDH, prime256v1, 256 bits"
  against TlsNegotiated.group, mapped by _GROUP_NAMES (OpenSSL's name -> the IANA name
  mxlens uses);
- the chain as sent: SHA-256 of the DER of each PEM block of -showcerts, in order, against
  ChainReceived.certs[i].sha256;
- verification: s_client's "Verify return code" (0 = chain to a root of ROOTS, dates and the
  MX name all fine) against ChainValidated.trusted and .name_matches, and the code's reason
  against mxlens's cert.* finding ids via _VERIFY_CODES. s_client does not fetch AIA, like
  every MTA; mxlens fetches it but still calls such a chain untrusted;
- accepted protocol versions: one s_client per version (-tls1 ... -tls1_3, with
  DEFAULT:@SECLEVEL=0 so that OpenSSL 3 offers TLS 1.0/1.1 at all) against the version sweep.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import ssl
import subprocess
from base64 import b64decode
from dataclasses import dataclass

import pytest

from probes.model.events import ChainReceived, ChainValidated, TlsNegotiated, TlsVersionsProbed
from tests.integration.conftest import CASES, World

pytestmark = pytest.mark.integration

OPENSSL = shutil.which("openssl")
TLS_CASES = sorted(name for name, case in CASES.items() if case.tls)

# s_client "Verify return code" -> the cert.* finding ids mxlens must report for it.
_VERIFY_CODES: dict[int, set[str]] = {
    0: set(),
    10: {"cert.expired"},  # X509_V_ERR_CERT_HAS_EXPIRED
    20: {"cert.incomplete_chain"},  # unable to get local issuer certificate (no AIA fetch)
    21: {"cert.incomplete_chain"},  # unable to verify the first certificate
    62: {"cert.name_mismatch"},  # X509_V_ERR_HOSTNAME_MISMATCH
}

# OpenSSL's group names in "Server Temp Key" -> the IANA names mxlens reports.
_GROUP_NAMES = {
    "X25519": "x25519",
    "X448": "x448",
    "prime256v1": "secp256r1",
    "secp384r1": "secp384r1",
    "secp521r1": "secp521r1",
}

_VERSION_FLAGS = {
    "TLSv1": "-tls1",
    "TLSv1.1": "-tls1_1",
    "TLSv1.2": "-tls1_2",
    "TLSv1.3": "-tls1_3",
}


@dataclass
class SClient:
    """What one s_client run reported."""

    version: str | None
    cipher: str | None
    group: str | None
    chain_sha256: list[str]
    verify_code: int | None
    verify_text: str
    raw: str


def parse_s_client(text: str) -> SClient:
    """Parse `openssl s_client -showcerts` output (OpenSSL 3.0 format)."""
    # The "New, X, Cipher is Y" line names the version that *defined* the cipher (TLS 1.1
    # with ECDHE-ECDSA-AES256-SHA shows "TLSv1.0"), so the version comes from the
    # SSL-Session block ("Protocol  : TLSv1.1") where there is one. For TLS 1.3 s_client
    # prints no such block before it quits (the session comes later, in a ticket), but
    # there the New line is right: TLS 1.3 suites exist in TLS 1.3 only.
    version = cipher = None
    m = re.search(r"^New, (\S+), Cipher is (\S+)", text, re.M)
    p = re.search(r"^\s*Protocol\s*: (\S+)", text, re.M)
    if m and m.group(2) != "(NONE)":
        version, cipher = (p.group(1) if p else m.group(1)), m.group(2)
    group = None
    m = re.search(r"^Server Temp Key: (.+)$", text, re.M)
    if m:
        parts = [p.strip() for p in m.group(1).split(",")]
        name = parts[1] if parts[0] in ("ECDH", "DH") and len(parts) > 2 else parts[0]
        group = _GROUP_NAMES.get(name, name)
    chain: list[str] = []
    section = text.split("Certificate chain", 1)[-1].split("\n---\n", 1)[0]
    for block in re.findall(
        r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", section, re.S
    ):
        chain.append(hashlib.sha256(b64decode("".join(block.split()))).hexdigest())
    code, verify_text = None, ""
    m = re.search(r"^\s*Verify return code: (\d+) \((.*)\)", text, re.M)
    if m:
        code, verify_text = int(m.group(1)), m.group(2)
    return SClient(version, cipher, group, chain, code, verify_text, text)


def s_client(world: World, name: str, *extra: str) -> SClient:
    assert OPENSSL is not None
    peer = world.peers[name]
    proc = subprocess.run(
        [
            OPENSSL,
            "s_client",
            "-starttls",
            "smtp",
            "-name",
            "mxlens-test.lab.test",
            "-connect",
            f"{peer.address}:{peer.port}",
            "-showcerts",
            "-CAfile",
            world.lab.ca_file,
            "-servername",
            peer.mx,
            "-verify_hostname",
            peer.mx,
            *extra,
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return parse_s_client(proc.stdout + proc.stderr)


@pytest.fixture(scope="module", autouse=True)
def _need_openssl() -> None:
    if OPENSSL is None:
        pytest.skip("the openssl command is not installed (run scripts/install-peers)")


def test_parser_reads_a_real_transcript_shape() -> None:
    """The parser on a fixed sample, so a parser bug cannot make both sides agree on None."""
    pem = ssl.DER_cert_to_PEM_cert(b"\x30\x03\x02\x01\x05")
    sample = (
        "CONNECTED(00000003)\n---\nCertificate chain\n 0 s:CN = a\n   i:CN = b\n"
        f"{pem}---\nServer certificate\nsubject=CN = a\n---\n"
        "Server Temp Key: ECDH, prime256v1, 256 bits\n---\n"
        "New, TLSv1.2, Cipher is ECDHE-ECDSA-AES256-GCM-SHA384\n"
        "SSL-Session:\n    Protocol  : TLSv1.2\n"
        "    Cipher    : ECDHE-ECDSA-AES256-GCM-SHA384\n"
        "    Verify return code: 62 (hostname mismatch)\n"
    )
    got = parse_s_client(sample)
    assert (got.version, got.cipher, got.group) == (
        "TLSv1.2",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "secp256r1",
    )
    assert got.chain_sha256 == [hashlib.sha256(b"\x30\x03\x02\x01\x05").hexdigest()]
    assert (got.verify_code, got.verify_text) == (62, "hostname mismatch")
    # A TLS 1.1 session whose cipher dates from TLS 1.0, and a failed handshake.
    legacy = parse_s_client(
        "New, TLSv1.0, Cipher is ECDHE-ECDSA-AES256-SHA\nSSL-Session:\n    Protocol  : TLSv1.1\n"
    )
    assert (legacy.version, legacy.cipher) == ("TLSv1.1", "ECDHE-ECDSA-AES256-SHA")
    tls13 = parse_s_client("New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384\n")
    assert (tls13.version, tls13.cipher) == ("TLSv1.3", "TLS_AES_256_GCM_SHA384")
    failed = parse_s_client("New, (NONE), Cipher is (NONE)\nSSL-Session:\n    Protocol  : TLSv1\n")
    assert (failed.version, failed.cipher) == (None, None)


@pytest.mark.parametrize("name", TLS_CASES)
async def test_mxlens_and_s_client_agree(postfix_world: World, name: str) -> None:
    out = await postfix_world.once(name)
    tls = out.main(TlsNegotiated)
    chain = out.main(ChainReceived)
    validated = out.main(ChainValidated)
    assert tls is not None and chain is not None and validated is not None, out.describe()
    ref = s_client(postfix_world, name)
    assert ref.version is not None and ref.verify_code is not None, ref.raw

    assert tls.version == ref.version
    assert tls.cipher == ref.cipher
    assert tls.group == ref.group
    assert [c.sha256 for c in chain.certs] == ref.chain_sha256

    assert ref.verify_code in _VERIFY_CODES, f"unmapped verify code: {ref.raw}"
    openssl_ok = ref.verify_code == 0
    assert (validated.trusted and validated.name_matches is True) is openssl_ok
    cert_ids = {i for i in out.ids if i.startswith("cert.")}
    assert cert_ids == _VERIFY_CODES[ref.verify_code], (ref.verify_text, out.describe())


@pytest.mark.parametrize("name", TLS_CASES)
async def test_accepted_versions_agree(postfix_world: World, name: str) -> None:
    out = await postfix_world.once(name)
    probed = out.of(TlsVersionsProbed)
    assert len(probed) == 1, out.describe()
    mxlens = dict(probed[0].accepted)
    openssl: dict[str, bool] = {}
    for version, flag in _VERSION_FLAGS.items():
        extra = [flag] if version == "TLSv1.3" else [flag, "-cipher", "DEFAULT:@SECLEVEL=0"]
        ref = s_client(postfix_world, name, *extra)
        openssl[version] = ref.version == version
    # TLS 1.0 and 1.1 are asked in one ClientHello: a version mxlens did not ask alone is
    # None, and every version it did answer agrees with openssl.
    assert {v: ok for v, ok in mxlens.items() if ok is not None} == {
        v: ok for v, ok in openssl.items() if mxlens.get(v) is not None
    }
    assert all(ok is not None for v, ok in mxlens.items() if v != "TLSv1" or not mxlens["TLSv1.1"])
