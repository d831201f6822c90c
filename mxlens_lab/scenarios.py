"""The lab's scenario table: one domain per fault, each the healthy baseline with ONE change.

`expect` is exactly the set of finding ids (every severity, info included) that
`mxlens check <domain>` must report under the scenario's `options`, and `breaks` the
walk-through step that the change breaks (None: nothing breaks).

The healthy baseline (scenario "healthy"): one MX host `mx1.<domain>` with an A record and a
PTR that forward-confirms; the zone is signed (the lab DNS sets AD); TLS-RPT
`v=TLSRPTv1; rua=mailto:tlsrpt@<domain>`; MTA-STS in enforce mode listing the MX; no TLSA
records; TLS 1.2 and 1.3 with ECDHE only; a leaf for the MX name from the scenario's own lab
intermediate under the trusted lab root, sent with the intermediate; every OCSP / CRL /
caIssuers URL answers and says good; STARTTLS not re-offered; not injection-vulnerable.
Every scenario gets its own intermediate CA (`<name>-ca`), so breaking one scenario's CA
endpoints breaks nothing else. TLSA records, when a scenario has them, are published at
both `_25._tcp.<mx>` and `_<lab smtp port>._tcp.<mx>` (the engine looks up the port it probes).

Finding id -> scenario that stages it (scenario name = first label of its domain):

    dns.nxdomain                nxdomain              dns.no_mx                no-mx
    dns.null_mx                 null-mx               dns.mx_unresolvable      mx-unresolvable
    dns.mx_is_cname             mx-cname              dns.mx_is_ip             mx-is-ip
    dns.lookup_failed           lookup-failed         dns.ptr_missing          ptr-missing
    dns.ptr_mismatch            ptr-mismatch
    smtp.connect_refused        connect-refused       smtp.connect_timeout     connect-timeout
    smtp.greeting_rejected      greeting-rejected     smtp.timeout             silent, endless
    smtp.rate_limited           rate-limited          smtp.ehlo_rejected       ehlo-rejected
    smtp.malformed_reply        malformed, endless-lines
    smtp.rate_limited (info)    rate-limited-once     tls.non_fs_accepted      tls-non-fs
    tls.weak_suite_accepted     tls-weak-suite        pool.inconsistent        lb-alternating (--attempts 2)
    tls.starttls_not_offered    no-starttls           tls.starttls_refused     starttls-refused
    tls.handshake_failed        handshake-failed, handshake-after-certificate
    tls.legacy_only             legacy-only
    tls.legacy_accepted         legacy-accepted       tls.no_tls13             no-tls13 (+ no-forward-secrecy, weak-cipher)
    tls.no_forward_secrecy      no-forward-secrecy    tls.weak_cipher          weak-cipher
    tls.starttls_still_offered  starttls-still-offered
    tls.plaintext_injection     plaintext-injection
    cert.untrusted              untrusted (+ untrusted-sts-testing)
    cert.self_signed            self-signed
    cert.incomplete_chain       incomplete-chain (+ incomplete-chain-sendmail)
    cert.expired                expired (+ pool-inconsistent, dane-ee-expired)
    cert.not_yet_valid          not-yet-valid         cert.expires_soon        expires-soon
    cert.name_mismatch          name-mismatch (+ dane-ee-name-mismatch)
    cert.expected_name_mismatch expected-name-mismatch
    cert.no_san                 no-san                cert.weak_key            weak-key
    cert.weak_signature         weak-signature        cert.not_server_auth     not-server-auth
    cert.revoked                revoked
    ca.ocsp_unreachable         ocsp-unreachable (+ revocation-unavailable)
    ca.crl_unreachable          crl-unreachable (+ revocation-unavailable)
    ca.issuer_unreachable       issuer-unreachable    ca.ocsp_invalid          ocsp-invalid
    ca.crl_invalid              crl-invalid           ca.no_revocation_info    no-revocation-info
    ca.revocation_unavailable   revocation-unavailable
    mtasts.record_invalid       mtasts-record-invalid mtasts.fetch_failed      mtasts-fetch-failed
    mtasts.policy_invalid       mtasts-policy-invalid mtasts.webpki_invalid    mtasts-webpki-invalid
    mtasts.mx_not_covered       mtasts-mx-not-covered mtasts.testing           mtasts-testing
    tlsrpt.missing              tlsrpt-missing        tlsrpt.invalid           tlsrpt-invalid
    dane.tlsa_mismatch          dane-mismatch         dane.lookup_failed       dane-lookup-failed
    dane.unusable               dane-unusable         dane.insecure            dane-insecure
    dane.dnssec_unsigned        dnssec-unsigned
    pool.inconsistent           pool-inconsistent, mx-pool (one preference)
    (no finding)                healthy, idn (bücher.lab.test), dane-ok, hostile

Ids that cannot be staged locally, or are staged by the hostile peers of tests/hostile/
rather than by a scenario (NOT_STAGED below, with the reason):
- smtp.not_tested_from_here: needs an IPv6 address this host has no route to, and the lab
  and its tests use loopback only. Its classification is unit-tested (tests/test_smtp.py).
- listen.*, cert.not_client_auth, cert.key_mismatch, cert.no_key: findings of `mxlens listen`
  and `mxlens cert` (our own sending side), which a check of a domain never raises. They are
  staged by tests/test_listener.py, tests/test_certfile.py and, with real Postfix,
  Exim and swaks senders, tests/integration/test_listen.py.
- dane.required: raised only by the connector simulation (exo-smtpdane-mandatory), never by
  `mxlens check` itself; tests/test_connectors.py stages it on the healthy scenario.
- ca.provider_root_missing: needs an Exchange Online MX name; the lab serves lab.test only.
  Unit-tested with the real DigiCert Global Root G2 fingerprint (tests/test_providers.py).

Ids staged with caveats:
- tls.weak_cipher: this machine's OpenSSL 3 has no RC4 and no 3DES (not even at
  @SECLEVEL=0), so the weak cipher staged is a NULL cipher (ECDHE-ECDSA-NULL-SHA, TLS 1.2
  only). A client only negotiates it if its cipher string includes eNULL: "DEFAULT" removes
  eNULL for good (even "DEFAULT:eNULL" has none), so probes/tls.py uses
  "ALL:eNULL:@SECLEVEL=0"; with "DEFAULT" the scenario gives tls.handshake_failed instead.
- smtp.connect_timeout: staged with a listening socket whose accept queue (listen(0)) the lab
  fills with its own never-accepted connections, so the kernel drops further SYNs. Verified on
  this Linux kernel (tcp_abort_on_overflow=0); on a kernel that answers an overflowing queue
  with RST the scenario would give smtp.connect_refused instead.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

from probes.interpret.walk import STEPS as STEPS
from probes.model.options import Policy

_OWN_SIDE = "raised by mxlens listen / mxlens cert about our own sending side, never by check: tests/test_listener.py and tests/test_certfile.py and tests/integration/test_listen.py stage it"
NOT_STAGED: dict[str, str] = {
    "smtp.not_tested_from_here": "needs an unroutable IPv6 address; the lab is loopback only",
    **{
        fid: _OWN_SIDE
        for fid in (
            "listen.no_tls",
            "listen.no_client_cert",
            "listen.sender_name_mismatch",
            "listen.not_accepted_domain",
            "listen.handshake_failed",
            "cert.not_client_auth",
            "cert.key_mismatch",
            "cert.no_key",
        )
    },
    "dane.required": "raised by the connector simulation only (exo-smtpdane-mandatory on a domain without DANE); tests/test_connectors.py stages it on healthy",
    "ca.provider_root_missing": "needs an Exchange Online MX name (mail.protection.outlook.com, mx.microsoft); the lab serves lab.test only",
    # Staged by purpose-built hostile peers instead (tests/hostile/), not by a lab scenario:
    "cert.unparseable": "a BER-encoded leaf: tests/hostile/test_chain_budget.py",
    "ca.endpoint_not_fetched": "the lab allows private endpoints: tests/hostile/test_endpoint_fences.py",
    "dns.mx_not_probed": "1,000 MX records, 100 addresses: tests/hostile/test_route_caps.py",
    "check.deadline_reached": "a silent server past --deadline: tests/hostile/test_route_caps.py",
}

# Scenario texts use {domain} (ASCII form) and {mx} (the first MX host) placeholders.
POLICY_ENFORCE = "version: STSv1\nmode: enforce\n{mx_lines}max_age: 86400\n"
TLSRPT_OK = "v=TLSRPTv1; rua=mailto:tlsrpt@{domain}"
STS_RECORD_OK = "v=STSv1; id=20261122"

HOSTILE_BANNER = (
    b"220 [bold red]mx1[/] \x1b[2J\x1b[31mESMTP\x1b[0m \x1b]0;pwned\x07 \x9b31m "
    b"\xff\xfe ready \xe2\x80\xae"
)


@dataclass(frozen=True)
class CertSpec:
    """The MX certificate. Defaults: EC leaf for the MX host from the scenario's intermediate."""

    names: tuple[str, ...] | None = None  # None = the MX host (with {domain}/{mx} placeholders)
    issuer: str = "lab"  # "lab" (trusted root) | "untrusted" (a root not in --ca-file) | "self"
    send_intermediate: bool = True
    not_before_days: float | None = None  # relative to now; None = PKI default (-1 day)
    not_after_days: float | None = None  # None = PKI default (+90 days)
    key: str = "ec"
    sig_hash: str = "sha256"
    san: bool = True
    eku: tuple[str, ...] | None = ("serverAuth",)
    ocsp: bool = True
    crl: bool = True
    aia: bool = True
    # kind ("ocsp" | "crl" | "aia") -> URL (placeholders {domain}, {http}: the PKI base URL)
    url_overrides: tuple[tuple[str, str], ...] = ()
    revoked: bool = False


@dataclass(frozen=True)
class MxSpec:
    """One MX host of a scenario."""

    label: str = "mx1"  # the host is <label>.<domain>
    preference: int = 10
    server: dict[str, Any] = field(default_factory=dict)  # Behaviour overrides
    cert: CertSpec = CertSpec()
    # "smtp": a lab SMTP server; "refuse": an address with nothing listening;
    # "blackhole": a listener that never completes a connection; "none": no A record at all.
    address: str = "smtp"
    ptr: str = "ok"  # "ok" | "missing" | "mismatch" (PTR names a host with another address)


@dataclass(frozen=True)
class Stage:
    """How to build a scenario's world. Every default is the healthy baseline."""

    mx: tuple[MxSpec, ...] = (MxSpec(),)
    # "normal" | "none" (no MX: the domain's own A) | "null" (0 .) | "ip" (an IP literal as
    # target) | "cname" (the MX target is an alias of mx1) | "nxdomain" (no domain at all) |
    # "servfail" (the MX query fails)
    mx_record: str = "normal"
    signed: bool = True
    tlsrpt: str | None = TLSRPT_OK
    mtasts_records: tuple[str, ...] = (STS_RECORD_OK,)
    mtasts_policy: str | None = POLICY_ENFORCE
    mtasts_status: int = 200
    mtasts_cert: str = "ok"  # "ok" | "wrong-name"
    tlsa: str = "none"  # "none" | "match" | "mismatch" | "servfail" | "unusable"
    # Breakage of the scenario CA's endpoints: kind ("ocsp" | "crl" | "aia") -> a
    # lab.http_server mode ("404", "500", "slow", "close", "bad-signature", "stale", "expired").
    endpoints: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Scenario:
    name: str
    domain: str  # as a user types it (may be a U-label)
    description: str
    expect: frozenset[str]
    breaks: str | None
    options: dict[str, Any] = field(default_factory=dict)  # probes.model.options.Options fields
    stage: Stage = Stage()
    # policy -> {finding id: severity}: the exact grades `check --policy P` must give, for the
    # scenarios whose point is how senders judge them (tests/test_lab_policies.py).
    grades: dict[str, dict[str, str]] = field(default_factory=dict)


def _mx(**kw: Any) -> tuple[MxSpec, ...]:
    return (MxSpec(**kw),)


def _server(**kw: Any) -> tuple[MxSpec, ...]:
    return (MxSpec(server=kw),)


def _cert(**kw: Any) -> tuple[MxSpec, ...]:
    return (MxSpec(cert=CertSpec(**kw)),)


def _s(
    name: str,
    description: str,
    expect: tuple[str, ...] | list[str],
    breaks: str | None,
    *,
    domain: str | None = None,
    options: dict[str, Any] | None = None,
    grades: dict[str, dict[str, str]] | None = None,
    **stage: Any,
) -> Scenario:
    return Scenario(
        name=name,
        domain=domain or f"{name}.lab.test",
        description=description,
        expect=frozenset(expect),
        breaks=breaks,
        options=dict(options or {}),
        stage=Stage(**stage),
        grades=dict(grades or {}),
    )


POLICIES: tuple[Policy, ...] = (
    "strict",
    "opportunistic",
    "encrypt",
    "verify",
    "domain",
    "mta-sts",
    "dane",
)


def _every(fid: str, sev: str, **other: str) -> dict[str, dict[str, str]]:
    """One finding's grade under every policy: `sev`, except where `other` says."""
    return {p: {fid: other.get(p.replace("-", "_"), sev)} for p in POLICIES}


_TLS1, _TLS11, _TLS12 = (
    ssl.TLSVersion.TLSv1,
    ssl.TLSVersion.TLSv1_1,
    ssl.TLSVersion.TLSv1_2,
)

_LIST: list[Scenario] = [
    # ---- no finding --------------------------------------------------------------------
    _s(
        "healthy",
        "Everything right: signed zone, MTA-STS enforce, TLS-RPT, TLS 1.2/1.3 with ECDHE, a trusted chain, working OCSP/CRL/AIA.",
        (),
        None,
    ),
    _s(
        "idn",
        "The healthy baseline under an internationalised name (bücher = xn--bcher-kva).",
        (),
        None,
        domain="bücher.lab.test",
    ),
    _s(
        "dane-ok",
        "Healthy plus a DNSSEC-validated TLSA 3 1 1 record that matches the leaf key: DANE in use, nothing wrong.",
        (),
        None,
        tlsa="match",
    ),
    _s(
        "hostile",
        "A greeting with Rich markup, ANSI CSI/OSC escapes (screen clear, title change), a C1 CSI, invalid UTF-8 and a bidi override, then normal operation. No finding: the reply syntax (code, separator, length) is valid; the point is that front ends show the text harmlessly.",
        (),
        None,
        mx=_server(banner=HOSTILE_BANNER),
    ),
    # ---- DNS -----------------------------------------------------------------------------
    _s(
        "nxdomain",
        "The domain does not exist (NXDOMAIN); nothing else is looked at.",
        ("dns.nxdomain",),
        "resolve_mx",
        mx_record="nxdomain",
    ),
    _s(
        "no-mx",
        "No MX record: the domain's own A record is the implicit MX (a healthy server with a certificate for the domain; the MTA-STS policy lists the domain).",
        ("dns.no_mx",),
        "resolve_mx",
        mx_record="none",
    ),
    _s(
        "null-mx",
        "RFC 7505 null MX (0 .): the domain accepts no mail.",
        ("dns.null_mx",),
        "resolve_mx",
        mx_record="null",
    ),
    _s(
        "mx-unresolvable",
        "The MX host name has no A/AAAA (NXDOMAIN).",
        ("dns.mx_unresolvable",),
        "resolve_address",
        mx=_mx(address="none", ptr="missing"),
    ),
    _s(
        "mx-cname",
        "The MX target mail.<domain> is a CNAME to mx1.<domain> (healthy server; the certificate and the MTA-STS policy carry both names).",
        ("dns.mx_is_cname",),
        "resolve_mx",
        mx_record="cname",
    ),
    _s(
        "mx-is-ip",
        "The MX target is an IP literal written as a name (10 127.x.y.z.). The engine must stop at that MX: no address, TLSA or PTR lookups (the lab REFUSES names outside lab.test) and no connection.",
        ("dns.mx_is_ip",),
        "resolve_mx",
        mx_record="ip",
    ),
    _s(
        "lookup-failed",
        "The resolver answers SERVFAIL for the domain's MX query (other names resolve).",
        ("dns.lookup_failed",),
        "resolve_mx",
        mx_record="servfail",
    ),
    _s(
        "ptr-missing",
        "The MX address has no PTR record.",
        ("dns.ptr_missing",),
        "resolve_address",
        mx=_mx(ptr="missing"),
    ),
    _s(
        "ptr-mismatch",
        "The PTR names mail-old.<domain>, whose A record is another address.",
        ("dns.ptr_mismatch",),
        "resolve_address",
        mx=_mx(ptr="mismatch"),
    ),
    # ---- SMTP ----------------------------------------------------------------------------
    _s(
        "connect-refused",
        "Nothing listens on the MX address: connection refused.",
        ("smtp.connect_refused",),
        "connect",
        mx=_mx(address="refuse"),
    ),
    _s(
        "connect-timeout",
        "The MX address drops SYNs (a full accept queue): connect timeout.",
        ("smtp.connect_timeout",),
        "connect",
        mx=_mx(address="blackhole"),
    ),
    _s(
        "greeting-rejected",
        "The greeting is 554 5.3.2 (no service); commands get 503.",
        ("smtp.greeting_rejected",),
        "greeting",
        mx=_server(greeting_code=554, greeting_text="5.3.2 {mx} No SMTP service here"),
    ),
    _s(
        "rate-limited",
        "The greeting is 421 'Too many connections' and the server hangs up: a throttle, reported as smtp.rate_limited only (not also smtp.greeting_rejected).",
        ("smtp.rate_limited",),
        "greeting",
        mx=_server(
            greeting_code=421, greeting_text="4.7.0 {mx} Too many connections, try again later"
        ),
    ),
    _s(
        "rate-limited-once",
        "The first connection gets 421 'Too many connections' and a hang-up; later connections are served normally. mxlens waits min(5 s, timeout) and retries once: the healthy result plus smtp.rate_limited as info (a throttle that cleared).",
        ("smtp.rate_limited",),
        "greeting",
        mx=_server(throttle_first=1),
    ),
    _s(
        "silent",
        "The server accepts the connection and never says a word.",
        ("smtp.timeout",),
        "greeting",
        mx=_server(silent=True),
    ),
    _s(
        "endless",
        "The greeting line never ends: one byte every 50 ms, no CRLF, for up to 60 s. A per-step deadline (not an idle timeout) catches it.",
        ("smtp.timeout",),
        "greeting",
        mx=_server(endless="drip"),
    ),
    _s(
        "endless-lines",
        "The greeting is an endless stream of '220-' continuation lines. mxlens stops at 100 lines: smtp.malformed_reply (the reply breaks the caps) and smtp.timeout (the dialogue cannot go on: a sender waits until its own limit and defers).",
        ("smtp.malformed_reply", "smtp.timeout"),
        "greeting",
        mx=_server(endless="lines", lines_interval=0.0),
    ),
    _s(
        "ehlo-rejected",
        "EHLO (and HELO) answered 550.",
        ("smtp.ehlo_rejected",),
        "ehlo",
        mx=_server(ehlo_code=550),
    ),
    _s(
        "malformed",
        "The EHLO reply mixes codes (250/251) and has a 600-octet line; STARTTLS is still listed and works.",
        ("smtp.malformed_reply",),
        "ehlo",
        mx=_server(malformed=True),
    ),
    # ---- STARTTLS and TLS ----------------------------------------------------------------
    _s(
        "no-starttls",
        "EHLO does not list STARTTLS.",
        ("tls.starttls_not_offered",),
        "starttls_offered",
        mx=_server(offer_starttls=False),
    ),
    _s(
        "starttls-refused",
        "STARTTLS is listed but answered 454 4.7.0.",
        ("tls.starttls_refused",),
        "starttls_accepted",
        mx=_server(starttls_reply="454 4.7.0 TLS not available due to local problem"),
    ),
    _s(
        "handshake-failed",
        "STARTTLS gets 220, then the server closes the socket before any handshake byte (every TLS version fails alike).",
        ("tls.handshake_failed",),
        "handshake",
        mx=_server(handshake_fail="close"),
    ),
    _s(
        "handshake-after-certificate",
        "STARTTLS gets 220; every handshake, whatever the version, stops right after the server's Certificate with a fatal internal_error alert (a server that cannot use its own key, like Debian 12's OpenSMTPD with an RSA key under OpenSSL 3). The lab sends that alert in clear text, so under TLS 1.3 (encrypted by then) the client reports a bad record type instead of internal_error. The chain sent before the alert is kept and validated; the finding says the server had chosen a version, so this is no version mismatch.",
        ("tls.handshake_failed",),
        "handshake",
        mx=_server(handshake_fail="after-certificate"),
        grades={
            p: {"tls.handshake_failed": sev}
            for p, sev in (
                ("strict", "error"),
                ("opportunistic", "error"),  # MTA-STS enforce: TLS is required
                ("encrypt", "error"),
                ("verify", "error"),
                ("domain", "error"),
                ("mta-sts", "error"),
                ("dane", "error"),
            )
        },
    ),
    _s(
        "legacy-only",
        "TLS 1.0 and 1.1 only. tls.legacy_only alone: no tls.no_tls13 (TLS 1.2 is not accepted either) and no tls.legacy_accepted (nothing 1.2+).",
        ("tls.legacy_only",),
        "handshake",
        mx=_server(tls_min=_TLS1, tls_max=_TLS11),
    ),
    _s(
        "legacy-accepted",
        "TLS 1.0 to 1.3 accepted: legacy versions still on besides 1.2+.",
        ("tls.legacy_accepted",),
        "handshake",
        mx=_server(tls_min=_TLS1),
    ),
    _s(
        "no-tls13",
        "TLS 1.2 only (ECDHE): TLS 1.3 not offered.",
        ("tls.no_tls13",),
        "handshake",
        mx=_server(tls_max=_TLS12),
    ),
    _s(
        "no-forward-secrecy",
        "TLS 1.2 only with static RSA key exchange (AES128-GCM-SHA256, RSA 2048 leaf); TLS 1.2-only implies tls.no_tls13 too.",
        ("tls.no_forward_secrecy", "tls.no_tls13"),
        "handshake",
        mx=(
            MxSpec(
                server={"tls_max": _TLS12, "ciphers": "AES128-GCM-SHA256"},
                cert=CertSpec(key="rsa2048"),
            ),
        ),
    ),
    _s(
        "weak-cipher",
        "TLS 1.2 only with a NULL cipher (ECDHE-ECDSA-NULL-SHA: no encryption; this OpenSSL has no RC4/3DES). The client must offer eNULL (ALL:eNULL, not DEFAULT) to see it. TLS 1.2-only implies tls.no_tls13 too.",
        ("tls.weak_cipher", "tls.no_tls13"),
        "handshake",
        mx=_server(tls_max=_TLS12, ciphers="ECDHE-ECDSA-NULL-SHA:@SECLEVEL=0"),
    ),
    _s(
        "tls-non-fs",
        "TLS 1.2 and 1.3, RSA 2048 leaf; the TLS 1.2 list is ECDHE-RSA-AES128-GCM-SHA256 (preferred) then static-RSA AES128-GCM-SHA256. A normal client gets ECDHE; the cipher probe offering only kRSA suites is still accepted.",
        ("tls.non_fs_accepted",),
        "handshake",
        mx=(
            MxSpec(
                server={"ciphers": "ECDHE-RSA-AES128-GCM-SHA256:AES128-GCM-SHA256"},
                cert=CertSpec(key="rsa2048"),
            ),
        ),
    ),
    _s(
        "tls-weak-suite",
        "TLS 1.2 and 1.3; the TLS 1.2 list is ECDHE-ECDSA-AES128-GCM-SHA256 (preferred) then the NULL suite ECDHE-ECDSA-NULL-SHA. A normal client gets AES-GCM; the cipher probe offering only weak suites gets NULL (RC4/3DES/DES/EXPORT cannot be offered by this OpenSSL 3).",
        ("tls.weak_suite_accepted",),
        "handshake",
        mx=_server(ciphers="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-NULL-SHA:@SECLEVEL=0"),
    ),
    _s(
        "starttls-still-offered",
        "The EHLO inside TLS still lists STARTTLS (RFC 3207 forbids it).",
        ("tls.starttls_still_offered",),
        "starttls_accepted",
        mx=_server(offer_starttls_after_tls=True),
    ),
    _s(
        "plaintext-injection",
        "Commands pipelined in plaintext after STARTTLS are executed and answered inside TLS (CVE-2011-0411).",
        ("tls.plaintext_injection",),
        "starttls_accepted",
        mx=_server(injection_vulnerable=True),
    ),
    # ---- certificates --------------------------------------------------------------------
    _s(
        "untrusted",
        "The chain leads to a lab root that is not in --ca-file (its CA endpoints all work).",
        ("cert.untrusted",),
        "chain_trusted",
        mx=_cert(issuer="untrusted"),
        grades=_every("cert.untrusted", "error"),  # MTA-STS enforce: an error for everyone
    ),
    _s(
        "self-signed",
        "A self-signed leaf for the MX name. cert.self_signed only (not also untrusted); a self-signed certificate is its own root, so no ca.no_revocation_info.",
        ("cert.self_signed",),
        "chain_trusted",
        mx=_cert(issuer="self"),
    ),
    _s(
        "incomplete-chain",
        "The server sends the leaf without its intermediate; the leaf's caIssuers URL serves it.",
        ("cert.incomplete_chain",),
        "chain_trusted",
        mx=_cert(send_intermediate=False),
    ),
    _s(
        "incomplete-chain-sendmail",
        "incomplete-chain behind a Sendmail greeting: the fix names Sendmail's CACertFile, the only place its intermediate goes on the wire from.",
        ("cert.incomplete_chain",),
        "chain_trusted",
        mx=(
            MxSpec(
                server={"banner": b"220 mx1 ESMTP Sendmail 8.17.1.9/8.17.1.9; ready"},
                cert=CertSpec(send_intermediate=False),
            ),
        ),
    ),
    _s(
        "expired",
        "The leaf expired two days ago (OCSP and CRL still answer good).",
        ("cert.expired",),
        "chain_trusted",
        mx=_cert(not_before_days=-92, not_after_days=-2),
    ),
    _s(
        "not-yet-valid",
        "The leaf's notBefore is two days ahead.",
        ("cert.not_yet_valid",),
        "chain_trusted",
        mx=_cert(not_before_days=2, not_after_days=92),
    ),
    _s(
        "expires-soon",
        "The leaf expires in 5 days.",
        ("cert.expires_soon",),
        "chain_trusted",
        mx=_cert(not_after_days=5),
    ),
    _s(
        "name-mismatch",
        "The leaf is for mail.other.lab.test, not the MX name.",
        ("cert.name_mismatch",),
        "name_match",
        mx=_cert(names=("mail.other.lab.test",)),
    ),
    _s(
        "expected-name-mismatch",
        "A healthy server checked with --expect-name mail.partner.example (a connector's TlsDomain) that the certificate lacks.",
        ("cert.expected_name_mismatch",),
        "name_match",
        options={"expect_name": "mail.partner.example"},
    ),
    _s(
        "no-san",
        "The leaf has no subjectAltName; its CN is the MX name. cert.no_san only: with no SAN at all the CN is matched (RFC 9525 fallback), so no cert.name_mismatch.",
        ("cert.no_san",),
        "name_match",
        mx=_cert(san=False),
    ),
    _s(
        "weak-key",
        "The leaf key is RSA 1024 (server at @SECLEVEL=0 so it can be used).",
        ("cert.weak_key",),
        "chain_trusted",
        # !kRSA: the baseline has ECDHE only; DEFAULT would also accept static RSA with this
        # RSA key, which the cipher probe rightly reports (tls.non_fs_accepted).
        mx=(MxSpec(server={"ciphers": "DEFAULT:!kRSA:@SECLEVEL=0"}, cert=CertSpec(key="rsa1024")),),
    ),
    _s(
        "weak-signature",
        "The leaf is signed with ECDSA-SHA1 (the rest of the chain is SHA-256).",
        ("cert.weak_signature",),
        "chain_trusted",
        mx=(MxSpec(server={"ciphers": "DEFAULT:@SECLEVEL=0"}, cert=CertSpec(sig_hash="sha1")),),
    ),
    _s(
        "not-server-auth",
        "The leaf's extended key usage is clientAuth only.",
        ("cert.not_server_auth",),
        "chain_trusted",
        mx=_cert(eku=("clientAuth",)),
    ),
    _s(
        "revoked",
        "The leaf is revoked: OCSP says revoked and the CRL lists it.",
        ("cert.revoked",),
        "revocation",
        mx=_cert(revoked=True),
    ),
    # ---- CA endpoints --------------------------------------------------------------------
    _s(
        "ocsp-unreachable",
        "The leaf's OCSP URL answers 404; its CRL works.",
        ("ca.ocsp_unreachable",),
        "revocation",
        endpoints=(("ocsp", "404"),),
    ),
    _s(
        "crl-unreachable",
        "The leaf's CRL URL answers 500; its OCSP works.",
        ("ca.crl_unreachable",),
        "revocation",
        endpoints=(("crl", "500"),),
    ),
    _s(
        "issuer-unreachable",
        "The leaf's caIssuers URL closes the connection without an answer (the chain is complete, so validation does not need it).",
        ("ca.issuer_unreachable",),
        "revocation",
        endpoints=(("aia", "close"),),
    ),
    _s(
        "ocsp-invalid",
        "The OCSP answer is signed by an unrelated key.",
        ("ca.ocsp_invalid",),
        "revocation",
        endpoints=(("ocsp", "bad-signature"),),
    ),
    _s(
        "crl-invalid",
        "The CRL is past its nextUpdate.",
        ("ca.crl_invalid",),
        "revocation",
        endpoints=(("crl", "expired"),),
    ),
    _s(
        "no-revocation-info",
        "The leaf names neither an OCSP responder nor a CRL.",
        ("ca.no_revocation_info",),
        "revocation",
        mx=_cert(ocsp=False, crl=False),
    ),
    _s(
        "revocation-unavailable",
        "Both revocation sources of the leaf are unreachable: OCSP answers too slowly (after the client timeout) and the CRL host crl.gone.<domain> does not resolve.",
        ("ca.ocsp_unreachable", "ca.crl_unreachable", "ca.revocation_unavailable"),
        "revocation",
        endpoints=(("ocsp", "slow"),),
        mx=_cert(url_overrides=(("crl", "http://crl.gone.{domain}/crl/{ca}.crl"),)),
    ),
    # ---- MTA-STS and TLS-RPT -------------------------------------------------------------
    _s(
        "mtasts-record-invalid",
        "The _mta-sts TXT record lacks id= (v=STSv1 only).",
        ("mtasts.record_invalid",),
        "mta_sts",
        mtasts_records=("v=STSv1",),
    ),
    _s(
        "mtasts-fetch-failed",
        "The policy URL answers 404.",
        ("mtasts.fetch_failed",),
        "mta_sts",
        mtasts_status=404,
    ),
    _s(
        "mtasts-policy-invalid",
        "The policy says 'mode: enforced' (not a valid mode).",
        ("mtasts.policy_invalid",),
        "mta_sts",
        mtasts_policy="version: STSv1\nmode: enforced\n{mx_lines}max_age: 86400\n",
    ),
    _s(
        "mtasts-webpki-invalid",
        "The policy host presents a certificate for www.<domain>, not mta-sts.<domain>.",
        ("mtasts.webpki_invalid",),
        "mta_sts",
        mtasts_cert="wrong-name",
    ),
    _s(
        "mtasts-mx-not-covered",
        "The enforce policy lists mx: mx.elsewhere.lab.test only.",
        ("mtasts.mx_not_covered",),
        "mta_sts",
        mtasts_policy="version: STSv1\nmode: enforce\nmx: mx.elsewhere.lab.test\nmax_age: 86400\n",
    ),
    _s(
        "mtasts-testing",
        "The policy is in testing mode (everything else healthy).",
        ("mtasts.testing",),
        "mta_sts",
        mtasts_policy="version: STSv1\nmode: testing\n{mx_lines}max_age: 86400\n",
    ),
    _s("tlsrpt-missing", "No _smtp._tls record.", ("tlsrpt.missing",), None, tlsrpt=None),
    _s(
        "tlsrpt-invalid",
        "The TLS-RPT rua has no URI scheme (rua=tlsrpt@<domain>).",
        ("tlsrpt.invalid",),
        None,
        tlsrpt="v=TLSRPTv1; rua=tlsrpt@{domain}",
    ),
    # ---- DANE ----------------------------------------------------------------------------
    _s(
        "dane-mismatch",
        "A validated TLSA 3 1 1 record whose hash matches no certificate.",
        ("dane.tlsa_mismatch",),
        "dane",
        tlsa="mismatch",
    ),
    _s(
        "dane-lookup-failed",
        "The TLSA query gets SERVFAIL (a bogus answer).",
        ("dane.lookup_failed",),
        "dane",
        tlsa="servfail",
    ),
    _s(
        "dane-unusable",
        "Only a TLSA 0 0 1 (PKIX-TA) record: unusable for SMTP.",
        ("dane.unusable",),
        "dane",
        tlsa="unusable",
    ),
    _s(
        "dane-insecure",
        "A matching TLSA 3 1 1 record in an unsigned zone (no AD). dane.insecure only: not also dane.dnssec_unsigned, which is for a zone without TLSA records.",
        ("dane.insecure",),
        "dane",
        tlsa="match",
        signed=False,
    ),
    _s(
        "dnssec-unsigned",
        "The zone is not signed (no AD bit) and has no TLSA records.",
        ("dane.dnssec_unsigned",),
        "dane",
        signed=False,
    ),
    # ---- how senders weigh the domain's own policies --------------------------------------
    _s(
        "dane-ee-expired",
        "A signed zone with MTA-STS enforce and a validated TLSA 3 1 1 that matches the leaf, which expired two days ago. DANE senders accept it (DANE-EE: no date check); every MTA-STS sender refuses it, so it is an error under every policy but dane (RFC 8461 section 2: DANE decides where a sender does both).",
        ("cert.expired",),
        "chain_trusted",
        tlsa="match",
        mx=_cert(not_before_days=-92, not_after_days=-2),
        grades=_every("cert.expired", "error", dane="info"),
    ),
    _s(
        "dane-ee-name-mismatch",
        "A signed zone with MTA-STS enforce and a validated TLSA 3 1 1 that matches the leaf, which is for mail.other.lab.test, not the MX name. DANE-EE checks no name; MTA-STS senders do: an error under every policy but dane.",
        ("cert.name_mismatch",),
        "name_match",
        tlsa="match",
        mx=_cert(names=("mail.other.lab.test",)),
        grades=_every("cert.name_mismatch", "error", dane="info"),
    ),
    _s(
        "untrusted-sts-testing",
        "The untrusted scenario with the MTA-STS policy in testing mode instead of enforce: nothing published makes the chain matter to senders that check no certificate, so it is an error only for validating policies (its text says who still delivers), where under enforce (scenario untrusted) it is one for everyone (its text names the MTA-STS policy).",
        ("cert.untrusted", "mtasts.testing"),
        "chain_trusted",
        mx=_cert(issuer="untrusted"),
        mtasts_policy="version: STSv1\nmode: testing\n{mx_lines}max_age: 86400\n",
        grades={
            p: {"cert.untrusted": sev, "mtasts.testing": "info"}
            for p, sev in (
                ("strict", "error"),
                ("opportunistic", "warning"),
                ("encrypt", "warning"),
                ("verify", "error"),
                ("domain", "error"),
                ("mta-sts", "warning"),
                ("dane", "warning"),
            )
        },
    ),
    # ---- the pool ------------------------------------------------------------------------
    _s(
        "pool-inconsistent",
        "Two MX: mx1 (preference 10) has an expired certificate, mx2 (20) is healthy. The walk follows mx1.",
        ("pool.inconsistent", "cert.expired"),
        "chain_trusted",
        mx=(
            MxSpec(
                label="mx1", preference=10, cert=CertSpec(not_before_days=-92, not_after_days=-2)
            ),
            MxSpec(label="mx2", preference=20),
        ),
    ),
    _s(
        "mx-pool",
        "Two MX at one preference (10): mx1 sends its leaf without the intermediate, mx2 is healthy. Senders pick either; one that picks mx1 fails there and tries mx2 next, so mail arrives late or only through mx2. The walk follows mx1, fails at chain_trusted, and says it delivers via mx2.",
        ("cert.incomplete_chain", "pool.inconsistent"),
        "chain_trusted",
        mx=(
            MxSpec(label="mx1", preference=10, cert=CertSpec(send_intermediate=False)),
            MxSpec(label="mx2", preference=10),
        ),
        grades={
            p: {"cert.incomplete_chain": sev, "pool.inconsistent": "warning"}
            for p, sev in (
                ("strict", "error"),
                ("opportunistic", "error"),  # MTA-STS enforce
                ("encrypt", "error"),
                ("verify", "error"),
                ("domain", "error"),
                ("mta-sts", "error"),
                ("dane", "error"),
            )
        },
    ),
    _s(
        "lb-alternating",
        "One MX address behind a load balancer whose nodes differ: every second connection gets no STARTTLS. Checked with --attempts 2, the two main sessions disagree: pool.inconsistent names attempt 2. With --attempts 1 nothing is reported.",
        ("pool.inconsistent",),
        None,
        options={"attempts": 2},
        mx=_server(starttls_alternate=True),
    ),
]

SCENARIOS: dict[str, Scenario] = {s.name: s for s in _LIST}


def findings_staged() -> dict[str, list[str]]:
    """finding id -> names of the scenarios that expect it."""
    out: dict[str, list[str]] = {}
    for s in _LIST:
        for fid in sorted(s.expect):
            out.setdefault(fid, []).append(s.name)
    return out


def get(name: str) -> Scenario:
    """The scenario called name (KeyError with the known names otherwise)."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None


def find_scenario(name: str) -> Scenario | None:
    """The scenario whose domain is `name` or a parent of it (U-label or A-label, any case):
    `healthy.lab.test`, `mx1.healthy.lab.test` and `xn--bcher-kva.lab.test` all find theirs."""
    from probes.model.errors import CheckError
    from probes.net.dns import to_ascii

    try:
        wanted = to_ascii(name)
    except CheckError:
        return None
    best: Scenario | None = None
    for scenario in SCENARIOS.values():
        domain = to_ascii(scenario.domain)
        if wanted == domain or wanted.endswith("." + domain):
            if best is None or len(domain) > len(to_ascii(best.domain)):
                best = scenario
    return best
