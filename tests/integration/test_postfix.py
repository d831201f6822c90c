"""mxlens against real Postfix 3.x instances (issue 5, part 1).

Every case in conftest.CASES is a private Postfix on 127.N.77.k with one thing changed from a
correct setup; each test asserts the EXACT set of finding ids mxlens reports (every severity
but "ok"), plus the facts behind them that a user would read in the report. Certificates come
from the lab PKI, whose OCSP / CRL / caIssuers endpoints answer, so endpoint checks run for
real; DNS (MX, A, PTR, TLS-RPT, TLSA, MTA-STS) goes to the lab DNS only.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization

from probes.model.events import (
    ChainReceived,
    ChainValidated,
    EndpointChecked,
    SessionFinished,
    TlsNegotiated,
    TlsVersionsProbed,
    TranscriptLine,
)
from tests.integration.conftest import World

pytestmark = pytest.mark.integration

# Case -> the finding ids mxlens must report, nothing more, nothing less (policy strict).
EXPECTED: dict[str, set[str]] = {
    "healthy": set(),
    # Postfix 3.7's default smtpd_tls_protocols (>=TLSv1) still accepts TLS 1.0 and 1.1.
    "defaults": {"tls.legacy_accepted"},
    # The leaf's caIssuers URL serves the intermediate: diagnosable as incomplete, not untrusted.
    "no-intermediate": {"cert.incomplete_chain"},
    "expired": {"cert.expired"},
    "wrong-name": {"cert.name_mismatch"},
    "no-starttls": {"tls.starttls_not_offered"},
    "tls12-only": {"tls.no_tls13"},
    "tls13-only": set(),
    # mxlens never sends MAIL, so Postfix's 530 to MAIL-before-STARTTLS is not in its path:
    # what it sees is STARTTLS offered and working.
    "encrypt": set(),
}

# Which versions each case accepts, as the side probes must find them. TLS 1.0 and 1.1 are
# asked in one ClientHello: a server that takes 1.1 from it was not asked 1.0 alone (None).
MODERN_VERSIONS = {"TLSv1": False, "TLSv1.1": False, "TLSv1.2": True, "TLSv1.3": True}
VERSIONS: dict[str, dict[str, bool | None]] = {
    "healthy": MODERN_VERSIONS,
    "defaults": {"TLSv1": None, "TLSv1.1": True, "TLSv1.2": True, "TLSv1.3": True},
    "tls12-only": {"TLSv1": False, "TLSv1.1": False, "TLSv1.2": True, "TLSv1.3": False},
    "tls13-only": {"TLSv1": False, "TLSv1.1": False, "TLSv1.2": False, "TLSv1.3": True},
    "encrypt": MODERN_VERSIONS,
}


def _sha256(cert: object) -> str:
    der = cert.public_bytes(serialization.Encoding.DER)  # type: ignore[attr-defined]
    return hashlib.sha256(der).hexdigest()


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_case_reports_exactly_its_findings(postfix_world: World, name: str) -> None:
    out = await postfix_world.once(name)
    assert out.ids == EXPECTED[name], f"{name}: {out.peer.case.description}\n{out.describe()}"
    main = out.main(SessionFinished)
    assert main is not None
    if out.peer.case.tls:
        assert main.starttls is True and main.outcome == "ok", out.describe()
        assert out.main(TlsNegotiated) is not None
    expected_exit = 0 if not EXPECTED[name] else None
    if expected_exit is not None:
        assert out.report.exit_code() == 0, out.describe()


async def test_healthy_chain_and_endpoints(postfix_world: World) -> None:
    out = await postfix_world.once("healthy")
    peer = out.peer
    chain = out.main(ChainReceived)
    assert chain is not None
    # Exactly what Postfix was given: the leaf, then the intermediate, no root.
    assert [c.sha256 for c in chain.certs] == [
        _sha256(peer.issued.cert),
        _sha256(postfix_world.ca.cert),
    ]
    validated = out.main(ChainValidated)
    assert validated is not None
    assert validated.trusted is True and validated.name_matches is True
    assert [link.source for link in validated.path] == ["sent", "sent", "store"]
    endpoints = out.of(EndpointChecked)
    assert {e.kind for e in endpoints} == {"ocsp", "crl", "ca_issuers"}
    assert all(e.ok for e in endpoints), [(e.url, e.error) for e in endpoints]
    assert {e.cert_status for e in endpoints if e.kind == "ocsp"} == {"good"}


@pytest.mark.parametrize("name", sorted(VERSIONS))
async def test_version_sweep_matches_postfix_protocols(postfix_world: World, name: str) -> None:
    out = await postfix_world.once(name)
    probed = out.of(TlsVersionsProbed)
    assert len(probed) == 1, out.describe()
    assert dict(probed[0].accepted) == VERSIONS[name]
    best = max(v for v, ok in VERSIONS[name].items() if ok)
    # At most four connections per address, and on these servers at most one refused
    # handshake (the legacy probe's) beside the main session.
    assert out.report.mx[out.peer.mx].sessions and all(
        s.connections <= 4 for s in out.report.mx[out.peer.mx].sessions.values()
    )
    tls = out.main(TlsNegotiated)
    assert tls is not None and tls.version == best


async def test_missing_intermediate_is_fetched_from_aia(postfix_world: World) -> None:
    out = await postfix_world.once("no-intermediate")
    chain = out.main(ChainReceived)
    assert chain is not None and len(chain.certs) == 1
    validated = out.main(ChainValidated)
    assert validated is not None
    # A sender does not fetch AIA: the route fails for it, though mxlens found the path.
    assert validated.trusted is False
    assert [link.source for link in validated.path] == ["sent", "aia", "store"]
    assert validated.path[1].cert.sha256 == _sha256(postfix_world.ca.cert)
    (finding,) = [f for f in out.report.findings if f.id == "cert.incomplete_chain"]
    assert finding.severity == "error" and "CN=postfix-ca" in finding.summary


async def test_expired_is_an_error_strict_and_a_warning_opportunistic(
    postfix_world: World,
) -> None:
    strict = await postfix_world.once("expired")
    assert strict.report.exit_code() == 2
    validated = strict.main(ChainValidated)
    assert validated is not None and validated.trusted is False
    relaxed = await postfix_world.diagnose("expired", policy="opportunistic")
    assert relaxed.ids == {"cert.expired"}
    assert {f.severity for f in relaxed.report.findings if f.id == "cert.expired"} == {"warning"}
    assert relaxed.report.exit_code() == 1


async def test_wrong_name_names_both(postfix_world: World) -> None:
    out = await postfix_world.once("wrong-name")
    validated = out.main(ChainValidated)
    assert validated is not None
    assert validated.trusted is True and validated.name_matches is False
    (finding,) = [f for f in out.report.findings if f.id == "cert.name_mismatch"]
    assert "mx.wrong-name.postfix.lab.test" in finding.summary
    assert "www.wrong-name.postfix.lab.test" in finding.summary


async def test_no_starttls_stops_before_tls(postfix_world: World) -> None:
    out = await postfix_world.once("no-starttls")
    main = out.main(SessionFinished)
    assert main is not None and main.starttls is False and main.outcome == "starttls"
    assert out.main(TlsNegotiated) is None and out.main(ChainReceived) is None
    assert out.report.exit_code() == 2


def _smtp_lines(sock: socket.socket) -> str:
    """Read one SMTP reply (all lines), 64 KB at most."""
    data = b""
    while len(data) < 65536:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        lines = data.split(b"\r\n")
        if len(lines) > 1 and len(lines[-2]) >= 4 and lines[-2][3:4] == b" ":
            break
    return data.decode(errors="replace")


def test_encrypt_really_requires_tls(postfix_world: World) -> None:
    """The premise of the "encrypt" case: this Postfix refuses MAIL before STARTTLS."""
    peer = postfix_world.peers["encrypt"]
    with socket.create_connection((peer.address, peer.port), timeout=10) as sock:
        assert _smtp_lines(sock).startswith("220 ")
        sock.sendall(b"EHLO mxlens-test.lab.test\r\n")
        assert "STARTTLS" in _smtp_lines(sock)
        sock.sendall(b"MAIL FROM:<probe@mxlens-test.lab.test>\r\n")
        reply = _smtp_lines(sock)
        sock.sendall(b"QUIT\r\n")
    assert reply.startswith("530 5.7.0 Must issue a STARTTLS command first"), reply


async def test_rate_limit_421_is_reported_as_a_throttle(postfix_world: World) -> None:
    """anvil admits one connection per client per hour (mynetworks not exempt).

    First run: the main session is that one connection (TLS works); the side probes, which
    start together after it, get 421: mxlens reports smtp.rate_limited as info (a throttle
    on a side probe never changes the verdict), makes no further connection, and every side
    check is inconclusive. Second run: the greeting itself is 421.
    """
    first = await postfix_world.diagnose("rate-limit")
    assert first.ids == {"smtp.rate_limited"}, first.describe()
    main = first.main(SessionFinished)
    assert main is not None and main.outcome == "ok" and main.starttls is True
    (finding,) = [f for f in first.report.findings if f.id == "smtp.rate_limited"]
    assert finding.severity == "info"
    assert "421 4.7.0" in finding.summary and "later side probes not made" in finding.summary
    sessions = list(first.report.mx[first.peer.mx].sessions.values())
    assert [s.connections for s in sessions] == [4]
    assert {p.result for p in sessions[0].side_probes} == {"inconclusive"}
    assert first.report.exit_code() == 0

    second = await postfix_world.diagnose("rate-limit")
    assert second.ids == {"smtp.rate_limited"}, second.describe()
    main = second.main(SessionFinished)
    # One polite retry after a pause, throttled again: two connections, stopped at greeting.
    assert main is not None and main.outcome == "greeting" and main.connections == 2
    assert second.main(TlsNegotiated) is None
    greeting = [t for t in second.of(TranscriptLine) if t.purpose == "main" and t.dir == "S"]
    assert greeting and greeting[0].text.startswith("421 4.7.0 ")
    assert "too many connections" in greeting[0].text


def _cli(world: World, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    peer = world.peers[name]
    lab = world.lab
    ip, port = lab.resolver
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tui.cli",
            "check",
            peer.domain,
            "--json",
            "--resolver",
            f"{ip}:{port}",
            "--mx",
            f"{peer.mx}:{peer.port}",
            "--ca-file",
            lab.ca_file,
            "--https-port",
            str(lab.https_port),
            "--ehlo",
            "mxlens-test.lab.test",
            "--timeout",
            "5",
            # The lab's OCSP/CRL/AIA endpoints are on loopback, which a default check refuses.
            "--allow-private-endpoints",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("name", "code"), [("healthy", 0), ("tls12-only", 0), ("wrong-name", 2), ("no-starttls", 2)]
)
def test_cli_check_with_mx_override(postfix_world: World, name: str, code: int) -> None:
    """`mxlens check DOMAIN --mx HOST:PORT --json`: exit status and JSON as the contract says."""
    proc = _cli(postfix_world, name)
    assert proc.returncode == code, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema"] == "mxlens/1"
    ids = {f["id"] for f in doc["findings"] if f["severity"] != "ok"}
    assert ids == EXPECTED[name]
    (mx,) = doc["mx"]
    (session,) = mx["sessions"]
    peer = postfix_world.peers[name]
    assert (mx["host"], session["address"], session["port"]) == (peer.mx, peer.address, peer.port)
    assert session["starttls"] is (name != "no-starttls")
