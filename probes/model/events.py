"""Typed events that probes stream while a diagnosis runs.

Every probe is an async generator of these dataclasses. The orchestrator (`diagnose`) merges
them in arrival order; the headless report and the UI both consume the same stream. Events are
plain data: no sockets, no callbacks, nothing a front end has to know about the network.

Strings that came from the network (banners, EHLO lines, certificate fields, URLs, HTTP bodies)
are kept exactly as received (decoded with replacement characters where they were not valid
UTF-8). Front ends must pass them through `probes.model.safetext.visible()` before showing them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["error", "warning", "info", "ok"]
Direction = Literal["S", "C", "TLS", "!"]
SessionPurpose = Literal["main", "tls-versions", "injection", "cipher-probe", "attempt"]
EndpointKind = Literal["ocsp", "crl", "ca_issuers"]
CertSource = Literal["sent", "aia", "store"]
# The questions the side probes answer, and how each was answered.
SideCheck = Literal["legacy-tls", "static-rsa", "weak-suites", "injection"]
SideResult = Literal["vulnerable", "not vulnerable", "inconclusive"]


@dataclass(frozen=True)
class Where:
    """Where a thing was seen: an MX host, optionally one of its addresses and a port."""

    host: str
    address: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        text = self.host
        if self.address is not None:
            text += f"[{self.address}]"
        if self.port is not None:
            text += f":{self.port}"
        return text


# --------------------------------------------------------------------------- findings


EvidenceKind = Literal["transcript", "cert", "endpoint"]


@dataclass(frozen=True)
class Evidence:
    """Where the proof of a finding is: a line of the session's transcript (`index`, as in
    TranscriptLine.index), a certificate of the chain (`index`, 0 = leaf, in the validated
    path), or a CA endpoint (`url`). Its text form, "transcript:12", "cert:0",
    "endpoint:http://...", is what the JSON carries."""

    kind: EvidenceKind
    index: int | None = None
    url: str | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.url if self.kind == 'endpoint' else self.index}"

    @classmethod
    def parse(cls, ref: Evidence | str) -> Evidence | None:
        """The one reader of the text form; None for anything that is not one."""
        if isinstance(ref, Evidence):
            return ref
        kind, _, value = ref.partition(":")
        if kind in ("transcript", "cert") and value.isdigit():
            return cls(kind, int(value))  # type: ignore[arg-type]
        if kind == "endpoint" and value:
            return cls("endpoint", url=value)
        return None


def evidence_of(refs: Iterable[Evidence | str]) -> tuple[Evidence, ...]:
    """References as given by a probe or a walk step, as Evidence (unreadable ones dropped)."""
    return tuple(e for e in map(Evidence.parse, refs) if e is not None)


@dataclass(frozen=True)
class Finding:
    """One diagnosis. `id` comes from the catalog (findings.md); severity is already graded
    for the sender policy in use. `evidence` says where a front end can show the proof."""

    id: str
    severity: Severity
    where: Where
    summary: str
    detail: str
    fix: str
    evidence: tuple[Evidence, ...] = ()
    # The severity the probe raised it with, before grading for a sender policy; grading
    # for another sender (connector simulation) starts from here, not from the catalog.
    raised_as: Severity | None = None

    def __post_init__(self) -> None:
        # Probes may still give the text form ("transcript:12"): converted here, once.
        if any(not isinstance(e, Evidence) for e in self.evidence):
            object.__setattr__(self, "evidence", evidence_of(self.evidence))


# --------------------------------------------------------------------------- DNS


@dataclass(frozen=True)
class DnsQuery:
    """One DNS question and its answer, for the log. status: NOERROR, NODATA, NXDOMAIN,
    SERVFAIL, REFUSED, TIMEOUT, ERROR."""

    name: str
    rtype: str
    status: str
    answers: tuple[str, ...]
    authenticated: bool  # the AD bit of the response
    ms: float


@dataclass(frozen=True)
class MxHost:
    host: str  # lower-case, no trailing dot; an IP literal stays as written
    preference: int
    is_ip_literal: bool = False


@dataclass(frozen=True)
class MxResolved:
    """The domain's mail route. implicit: no MX, the domain's own A/AAAA is used (RFC 5321 5.1).
    null_mx: RFC 7505 `0 .`. hosts are in preference order (ties in the order received)."""

    domain: str  # as typed
    domain_ascii: str  # IDNA 2008 A-label form
    hosts: tuple[MxHost, ...]
    null_mx: bool = False
    implicit: bool = False
    authenticated: bool = False  # the MX answer came back with AD
    # The hosts are the user's (--mx, a bounce's host): no MX lookup was made, so nothing
    # is known about the MX records or their DNSSEC.
    overridden: bool = False


@dataclass(frozen=True)
class AddressesResolved:
    host: str
    addresses: tuple[str, ...]  # IPv4 first then IPv6, each in the order received
    cname: str | None = None  # the CNAME target when the host is an alias
    authenticated: bool = False


@dataclass(frozen=True)
class PtrResolved:
    address: str
    names: tuple[str, ...]
    forward_confirmed: bool | None  # None when there is no PTR to confirm


# --------------------------------------------------------------------------- SMTP / TLS


@dataclass(frozen=True)
class SessionStarted:
    where: Where
    purpose: SessionPurpose


@dataclass(frozen=True)
class TranscriptLine:
    """One line of the SMTP dialogue or one handshake step. t_ms is milliseconds since the
    session started (monotonic clock; never less than the line before). index is the line's
    position in its session's transcript, from 0: what `Evidence("transcript", index)` names."""

    where: Where
    purpose: SessionPurpose
    t_ms: float
    dir: Direction
    text: str
    index: int = 0


@dataclass(frozen=True)
class Waiting:
    """The session now waits for the server: `what` it waits for ("TCP connection",
    "greeting", "EHLO reply", "STARTTLS reply", "TLS handshake"), from t_ms on. The reader
    says it, so a front end need not guess from the last line shown."""

    where: Where
    purpose: SessionPurpose
    what: str
    t_ms: float


@dataclass(frozen=True)
class TlsNegotiated:
    where: Where
    version: str  # "TLSv1.3"
    cipher: str  # IANA or OpenSSL name as Python reports it
    bits: int | None
    forward_secrecy: bool
    group: str | None  # key-exchange group (x25519, secp256r1, ffdhe2048...) when readable
    handshake: tuple[str, ...]  # handshake messages in order, e.g. "<- ServerHello"
    sni: str | None = None


@dataclass(frozen=True)
class CertInfo:
    """A parsed X.509 certificate. Text fields are as in the certificate (RFC 4514 strings)."""

    subject: str
    issuer: str
    serial: str  # hex
    not_before: str  # ISO 8601 UTC, "2027-01-01T00:00:00Z"
    not_after: str
    san: tuple[str, ...]  # dNSName entries (and "IP:..." for IP entries)
    common_name: str | None
    key_type: str  # "RSA", "EC", "Ed25519", ...
    key_bits: int
    signature_hash: str | None  # "sha256", "sha1", ...
    eku: tuple[str, ...]  # dotted names: "serverAuth", "clientAuth", or OIDs
    is_ca: bool
    self_issued: bool  # subject == issuer (a root or a self-signed leaf)
    ocsp_urls: tuple[str, ...]
    ca_issuers_urls: tuple[str, ...]
    crl_urls: tuple[str, ...]
    sha256: str  # hex, lower case, no colons
    sha1: str
    spki_sha256: str
    der: bytes = field(repr=False, compare=False, default=b"")


@dataclass(frozen=True)
class ChainReceived:
    """The certificates exactly as the server sent them, in order."""

    where: Where
    certs: tuple[CertInfo, ...]


@dataclass(frozen=True)
class ChainLink:
    cert: CertInfo
    source: CertSource


@dataclass(frozen=True)
class ChainValidated:
    """The outcome of path validation. path runs leaf -> root when one was built (otherwise
    the certificates that were examined). The problems found on this chain come as
    FindingRaised events (cert.*), not in this event."""

    where: Where
    trusted: bool
    path: tuple[ChainLink, ...]
    error: str | None  # the validator's message, when validation failed
    trust_store: str  # "certifi", "system", or the --ca-file path
    names_checked: tuple[str, ...] = ()  # names looked for in the leaf
    name_matches: bool | None = None


@dataclass(frozen=True)
class TlsVersionsProbed:
    """Which protocol versions a server accepts, one handshake per version."""

    where: Where
    accepted: tuple[tuple[str, bool | None], ...]  # ("TLSv1", False) ... None = could not test


@dataclass(frozen=True)
class SideProbeChecked:
    """The answer to one side-probe question at one address, as data: findings say only
    what is wrong, this also says what was found fine and what could not be told.
    `purpose` names the transcript that holds the evidence ("main" when the main session
    already answered it); `ms` is how long the connection(s) that answered it took."""

    where: Where
    check: SideCheck
    result: SideResult
    reason: str
    purpose: SessionPurpose
    ms: float | None = None
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True)
class SessionFinished:
    where: Where
    purpose: SessionPurpose
    outcome: str  # "ok", or the step where it stopped: "connect", "greeting", "ehlo", ...
    starttls: bool | None  # STARTTLS advertised
    connections: int = 1
    # It ended on a throttle (421, "too many connections"), the retry included: `outcome`
    # is where it stopped, not a verdict on TLS.
    throttled: bool = False


# --------------------------------------------------------------------------- CA endpoints


@dataclass(frozen=True)
class EndpointChecked:
    """One OCSP / CRL / caIssuers URL fetched from this host."""

    kind: EndpointKind
    url: str
    host: str
    ok: bool  # reachable and answered usefully
    status: int | None  # HTTP status
    ms: float | None
    error: str | None  # "DNS: NXDOMAIN", "connect: refused", "timeout", "HTTP 404", ...
    detail: str | None  # "good, next update in 6 days", "CRL fresh, 3 entries", ...
    for_cert: str  # sha256 of the certificate the URL came from
    cert_status: Literal["good", "revoked", "unknown"] | None = None
    addresses: tuple[str, ...] = ()
    size: int | None = None
    # The session whose chain the URL came from. The same URL in two sessions' chains is
    # fetched once (a cache) but reported for each, so every address knows its endpoints.
    where: Where | None = None


# --------------------------------------------------------------------------- policies


@dataclass(frozen=True)
class MtaStsChecked:
    domain: str
    record: str | None  # the TXT record that was used
    record_id: str | None
    policy_text: str | None
    mode: str | None  # enforce / testing / none
    max_age: int | None
    mx_patterns: tuple[str, ...]
    error: str | None


@dataclass(frozen=True)
class TlsRptChecked:
    domain: str
    record: str | None
    rua: tuple[str, ...]
    error: str | None


@dataclass(frozen=True)
class TlsaRecord:
    usage: int
    selector: int
    mtype: int
    data: str  # hex

    def __str__(self) -> str:
        return f"{self.usage} {self.selector} {self.mtype} {self.data}"


@dataclass(frozen=True)
class DaneChecked:
    """TLSA records of one MX host, and (when a chain was seen at `where`) whether they match."""

    where: Where
    status: str  # NOERROR / NODATA / NXDOMAIN / SERVFAIL / TIMEOUT
    authenticated: bool
    records: tuple[TlsaRecord, ...]
    matched: TlsaRecord | None = None
    usable: int = 0  # number of records usable for SMTP (usage 2/3, known selector/mtype)
    # DANE-TA only: whether the leaf carries the MX host name (RFC 7672 3.2.2); None when no
    # DANE-TA record matched the chain.
    ta_name_ok: bool | None = None


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class FindingRaised:
    finding: Finding


@dataclass(frozen=True)
class GradingSettled:
    """What the grading of every finding depends on, once the domain's policies answered
    (findings were held back until then): the sender policy, whether a valid MTA-STS policy
    is in enforce mode, and the MX hosts with DNSSEC-validated, usable TLSA records. A
    re-grade for another sender (a connector) starts from this, not from a second guess."""

    policy: str
    mtasts_enforce: bool
    dane_hosts: tuple[str, ...]


@dataclass(frozen=True)
class DiagnosisFinished:
    target: str
    elapsed_ms: float
    worst: Severity | None  # the worst severity among findings, None if none
    error: str | None = None  # set when the check could not be made at all (exit 3)


Event = (
    DnsQuery
    | MxResolved
    | AddressesResolved
    | PtrResolved
    | SessionStarted
    | TranscriptLine
    | Waiting
    | TlsNegotiated
    | ChainReceived
    | ChainValidated
    | TlsVersionsProbed
    | SideProbeChecked
    | SessionFinished
    | EndpointChecked
    | MtaStsChecked
    | TlsRptChecked
    | DaneChecked
    | FindingRaised
    | GradingSettled
    | DiagnosisFinished
)
