"""A made-up but realistic diagnosis, for developing and testing the UI without a network.

`fake_diagnose(target, options)` has the signature of `probes.diagnose.diagnose` and yields
the same event types in a plausible arrival order: 2 MX hosts with 3 addresses, one of them
timing out; a hostile banner and hostile certificate and endpoint text (markup, ESC colour
codes, an OSC title change); a 3-certificate chain; 5 CA endpoints with one failing; side-probe
sessions; findings of every severity; and DiagnosisFinished last.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from probes.model.errors import CheckError
from probes.model.events import (
    AddressesResolved,
    CertInfo,
    ChainLink,
    ChainReceived,
    ChainValidated,
    DaneChecked,
    DiagnosisFinished,
    DnsQuery,
    EndpointChecked,
    Event,
    Finding,
    FindingRaised,
    MtaStsChecked,
    MxHost,
    MxResolved,
    PtrResolved,
    SessionFinished,
    SessionStarted,
    TlsNegotiated,
    TlsRptChecked,
    TlsVersionsProbed,
    TranscriptLine,
    Where,
)
from probes.model.findings import raise_finding
from probes.model.options import Options

HOSTILE_BANNER = "220 [bold]mx1 ESMTP\x1b[31m red \x1b]0;pwned\x07 ready"
HOSTILE_ORG = "O=[bold]Evil\x1b[2J Corp"
FAILING_URL = "http://crl.fake-ca.test/int.crl"


def _cert(
    cn: str,
    issuer: str,
    *,
    san: tuple[str, ...] = (),
    is_ca: bool = False,
    self_issued: bool = False,
    not_after: str = "2027-06-01T00:00:00Z",
    ocsp: tuple[str, ...] = (),
    crl: tuple[str, ...] = (),
    aia: tuple[str, ...] = (),
    extra_subject: str = "",
    fp: str = "0",
) -> CertInfo:
    subject = f"CN={cn}" + (f",{extra_subject}" if extra_subject else "")
    return CertInfo(
        subject=subject,
        issuer=issuer,
        serial="0a1b2c3d",
        not_before="2026-01-01T00:00:00Z",
        not_after=not_after,
        san=san,
        common_name=cn,
        key_type="EC",
        key_bits=256,
        signature_hash="sha256",
        eku=() if is_ca else ("serverAuth",),
        is_ca=is_ca,
        self_issued=self_issued,
        ocsp_urls=ocsp,
        ca_issuers_urls=aia,
        crl_urls=crl,
        sha256=(fp * 64)[:64],
        sha1=(fp * 40)[:40],
        spki_sha256=(fp * 64)[:64][::-1],
    )


ROOT = _cert("Fake Root CA", "CN=Fake Root CA", is_ca=True, self_issued=True, fp="c")
INTER = _cert(
    "Fake Intermediate CA",
    "CN=Fake Root CA",
    is_ca=True,
    ocsp=("http://ocsp.fake-ca.test/root",),
    crl=(FAILING_URL,),
    fp="b",
)


def _leaf(host: str, fp: str, not_after: str = "2027-06-01T00:00:00Z") -> CertInfo:
    return _cert(
        host,
        "CN=Fake Intermediate CA",
        san=(host,),
        not_after=not_after,
        ocsp=("http://ocsp.fake-ca.test/int",),
        crl=("http://crl.fake-ca.test/leaf.crl",),
        aia=("http://aia.fake-ca.test/int.der",),
        extra_subject=HOSTILE_ORG if host.startswith("mx1") else "",
        fp=fp,
    )


def _session(where: Where, banner: str) -> list[tuple[str, str]]:
    """The main dialogue as (dir, text) pairs."""
    return [
        ("S", banner),
        ("C", "EHLO client.example.net"),
        ("S", f"250-{where.host} Hello"),
        ("S", "250-PIPELINING"),
        ("S", "250-SIZE 52428800"),
        ("S", "250 STARTTLS"),
        ("C", "STARTTLS"),
        ("S", "220 2.0.0 Ready to start TLS"),
        ("TLS", "-> ClientHello"),
        ("TLS", "<- ServerHello"),
        ("TLS", "<- EncryptedExtensions"),
        ("TLS", "<- Certificate"),
        ("TLS", "<- CertificateVerify"),
        ("TLS", "<- Finished"),
        ("TLS", "-> Finished"),
        ("C", "EHLO client.example.net"),
        ("S", f"250-{where.host} Hello"),
        ("S", "250 PIPELINING"),
        ("C", "QUIT"),
        ("S", "221 2.0.0 Bye"),
    ]


async def fake_diagnose(
    target: str, options: Options, *, delay: float = 0.002
) -> AsyncIterator[Event]:
    """Yield a realistic event stream for target. delay paces events like a live run."""
    if not target or " " in target.strip():
        raise CheckError(f"not a domain name: {target!r}")
    domain = target.strip().rstrip(".").lower()
    port = options.port
    mx1, mx2 = f"mx1.{domain}", f"mx2.{domain}"
    a1, a1v6, a2 = "192.0.2.10", "2001:db8::10", "192.0.2.20"
    w1, w1v6, w2 = Where(mx1, a1, port), Where(mx1, a1v6, port), Where(mx2, a2, port)
    leaf1, leaf2 = _leaf(mx1, "a"), _leaf("other.example.net", "d", "2026-12-01T00:00:00Z")
    started = asyncio.get_running_loop().time()

    async def tick() -> None:
        await asyncio.sleep(delay)

    yield DnsQuery(domain, "MX", "NOERROR", (f"10 {mx1}.", f"20 {mx2}."), False, 3.1)
    yield MxResolved(domain, domain, (MxHost(mx1, 10), MxHost(mx2, 20)))
    await tick()
    yield AddressesResolved(mx1, (a1, a1v6))
    yield AddressesResolved(mx2, (a2,))
    yield PtrResolved(a1, (mx1,), True)
    yield PtrResolved(a2, ("host-20.isp.example",), False)
    yield PtrResolved(a1v6, (), None)
    await tick()

    # mx1[v4]: full session with the hostile banner.
    yield SessionStarted(w1, "main")
    lines = _session(w1, HOSTILE_BANNER)
    t = 0.0
    for i, (d, text) in enumerate(lines):
        t += 12.5 if d != "TLS" else 1.25
        yield TranscriptLine(w1, "main", t, d, text, i)  # type: ignore[arg-type]
        if text == "-> Finished":
            yield TlsNegotiated(
                w1,
                "TLSv1.3",
                "TLS_AES_256_GCM_SHA384",
                256,
                True,
                "x25519",
                tuple(x for dd, x in lines[8 : i + 1] if dd == "TLS"),
                sni=mx1,
            )
        if i % 4 == 0:
            await tick()
    yield ChainReceived(w1, (leaf1, INTER))
    yield ChainValidated(
        w1,
        True,
        (ChainLink(leaf1, "sent"), ChainLink(INTER, "sent"), ChainLink(ROOT, "store")),
        None,
        "certifi",
        (mx1,),
        True,
    )
    yield SessionFinished(w1, "main", "ok", True)
    # Side probes of mx1[v4].
    yield SessionStarted(w1, "tls-versions")
    for n, v in enumerate(("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")):
        ok = v in ("TLSv1.1", "TLSv1.2", "TLSv1.3")
        yield TranscriptLine(
            w1, "tls-versions", 5.0 * n, "TLS", f"{v}: {'accepted' if ok else 'refused'}", n
        )
    yield TlsVersionsProbed(
        w1, (("TLSv1", False), ("TLSv1.1", True), ("TLSv1.2", True), ("TLSv1.3", True))
    )
    yield SessionFinished(w1, "tls-versions", "ok", True, connections=4)
    yield SessionStarted(w1, "injection")
    yield TranscriptLine(w1, "injection", 1.0, "C", "STARTTLS\\r\\nNOOP")
    yield TranscriptLine(w1, "injection", 3.0, "S", "220 2.0.0 Ready to start TLS", 1)
    yield SessionFinished(w1, "injection", "ok", True)
    await tick()

    # mx1[v6]: times out on connect.
    yield SessionStarted(w1v6, "main")
    await tick()
    yield TranscriptLine(w1v6, "main", 2000.0, "!", "connect timed out after 2.0 s")
    yield SessionFinished(w1v6, "main", "connect", None)
    yield FindingRaised(
        raise_finding(
            "smtp.connect_timeout",
            w1v6,
            "no TCP answer from 2001:db8::10 port 25 in 2.0 s",
            evidence=("transcript:0",),
        )
    )
    yield FindingRaised(
        raise_finding("dns.ptr_missing", Where(mx1, a1v6), "no PTR for 2001:db8::10")
    )

    # mx2: works, but the certificate names another host and expires soon.
    yield SessionStarted(w2, "main")
    t = 0.0
    for i, (d, text) in enumerate(_session(w2, f"220 {mx2} ESMTP Postfix")):
        t += 20.0 if d != "TLS" else 2.0
        yield TranscriptLine(w2, "main", t, d, text, i)  # type: ignore[arg-type]
        if text == "-> Finished":
            yield TlsNegotiated(
                w2, "TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256", 128, True, "secp256r1", (), sni=mx2
            )
    await tick()
    yield ChainReceived(w2, (leaf2, INTER))
    yield ChainValidated(
        w2,
        True,
        (ChainLink(leaf2, "sent"), ChainLink(INTER, "aia"), ChainLink(ROOT, "store")),
        None,
        "certifi",
        (mx2,),
        False,
    )
    yield SessionFinished(w2, "main", "ok", True)
    yield FindingRaised(
        raise_finding(
            "cert.name_mismatch",
            w2,
            f"{mx2} is not in the certificate (SAN: other.example.net)",
            evidence=("cert:0",),
        )
    )
    yield FindingRaised(
        raise_finding(
            "cert.expires_soon", w2, "the certificate expires on 2026-12-01", evidence=("cert:0",)
        )
    )
    yield FindingRaised(raise_finding("tls.no_tls13", w2, "TLS 1.3 is not offered"))
    yield FindingRaised(
        Finding(
            "tls.starttls_not_offered",
            "ok",
            w1,
            "STARTTLS offered and accepted",
            "The EHLO reply lists STARTTLS.",
            "",
            ("transcript:5",),
        )
    )

    # CA endpoints (5 URLs, one failing, one with hostile text in its detail).
    endpoints = [
        (
            "ocsp",
            "http://ocsp.fake-ca.test/int",
            True,
            200,
            41.0,
            None,
            "good, next update in 6 days",
            leaf1.sha256,
        ),
        (
            "crl",
            "http://crl.fake-ca.test/leaf.crl",
            True,
            200,
            55.5,
            None,
            "CRL fresh, 3 entries",
            leaf1.sha256,
        ),
        (
            "ca_issuers",
            "http://aia.fake-ca.test/int.der",
            True,
            200,
            23.0,
            None,
            "Fake Intermediate CA",
            leaf1.sha256,
        ),
        (
            "ocsp",
            "http://ocsp.fake-ca.test/root",
            True,
            200,
            38.2,
            None,
            "good\x1b[5m [blink]",
            INTER.sha256,
        ),
        ("crl", FAILING_URL, False, None, None, "timeout after 2.0 s", None, INTER.sha256),
    ]
    for kind, url, ok, status, ms, error, detail, fp in endpoints:
        await tick()
        host = url.split("/")[2]
        yield EndpointChecked(
            kind,  # type: ignore[arg-type]
            url,
            host,
            ok,
            status,
            ms,
            error,
            detail,
            fp,
            cert_status="good" if kind == "ocsp" and ok else None,
            addresses=("198.51.100.7",),
        )
    yield FindingRaised(
        raise_finding(
            "ca.crl_unreachable",
            w1,
            "crl.fake-ca.test did not answer in 2.0 s",
            evidence=(f"endpoint:{FAILING_URL}",),
        )
    )

    # Policies.
    yield MtaStsChecked(
        domain,
        "v=STSv1; id=20261101",
        "20261101",
        f"version: STSv1\nmode: enforce\nmx: {mx1}\nmax_age: 604800\n",
        "enforce",
        604800,
        (mx1,),
        None,
    )
    yield FindingRaised(
        raise_finding("mtasts.mx_not_covered", Where(mx2), f"{mx2} matches no mx: pattern")
    )
    yield TlsRptChecked(domain, None, (), None)
    yield FindingRaised(raise_finding("tlsrpt.missing", Where(domain), "no _smtp._tls record"))
    yield DaneChecked(Where(mx1), "NXDOMAIN", False, ())
    yield DaneChecked(Where(mx2), "NXDOMAIN", False, ())
    elapsed = (asyncio.get_running_loop().time() - started) * 1000.0
    yield DiagnosisFinished(domain, elapsed, "error")
