"""DANE for SMTP (RFC 7671, RFC 7672): TLSA records of an MX host and whether a chain matches.

A DANE sender looks up `_<port>._tcp.<mx>` TLSA only when the answer can be DNSSEC-validated
(the AD bit from a validating resolver), uses only DANE-TA(2) and DANE-EE(3) records, and
defers mail when the lookup fails or no usable record matches. `judge_dane` is pure so every
outcome can be unit-tested without a network.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from probes.checks.chain import issued_by
from probes.model.events import DaneChecked, Event, FindingRaised, TlsaRecord, Where
from probes.model.findings import raise_finding
from probes.model.names import canonical, dane_name_matches
from probes.model.wording import count
from probes.net.dns import Resolver

USAGE_NAMES = {0: "PKIX-TA", 1: "PKIX-EE", 2: "DANE-TA", 3: "DANE-EE"}
_DIGEST_LEN = {1: 32, 2: 64}  # SHA-256, SHA-512
_FAILED = ("SERVFAIL", "TIMEOUT", "REFUSED")


@dataclass(frozen=True)
class TlsaLookup:
    """The TLSA answer for one MX host. status is the Answer status (NOERROR, NODATA,
    NXDOMAIN, SERVFAIL, TIMEOUT, REFUSED, or "ERROR: ..."); authenticated is the AD bit."""

    name: str
    status: str
    authenticated: bool
    records: tuple[TlsaRecord, ...]
    unparsed: tuple[str, ...] = ()  # records that did not parse (kept for the log)


def parse_tlsa(rdata: object) -> TlsaRecord:
    """A TlsaRecord from a dnspython TLSA rdata, or from presentation text such as
    `3 1 1 ab12...` (the hex may be split by spaces, or wrapped in parentheses).
    Raises ValueError when the input is not a TLSA record."""
    if not isinstance(rdata, str):
        try:
            usage = int(getattr(rdata, "usage"))  # noqa: B009 - any TLSA-shaped rdata
            selector = int(getattr(rdata, "selector"))  # noqa: B009
            mtype = int(getattr(rdata, "mtype"))  # noqa: B009
            cert = bytes(getattr(rdata, "cert"))  # noqa: B009
        except (AttributeError, TypeError, ValueError) as exc:
            raise ValueError(f"not a TLSA rdata: {exc}") from None
        return TlsaRecord(usage, selector, mtype, cert.hex())
    text = rdata.replace("(", " ").replace(")", " ")
    parts = text.split()
    if len(parts) < 4:
        raise ValueError(f"TLSA needs usage, selector, matching type and data: {rdata[:60]!r}")
    try:
        usage, selector, mtype = (int(p) for p in parts[:3])
    except ValueError:
        raise ValueError(f"TLSA fields must be numbers: {rdata[:60]!r}") from None
    if not all(0 <= v <= 255 for v in (usage, selector, mtype)):
        raise ValueError(f"TLSA fields must be 0..255: {rdata[:60]!r}")
    data = "".join(parts[3:]).lower()
    try:
        bytes.fromhex(data)
    except ValueError:
        raise ValueError(f"TLSA data is not hex: {data[:40]!r}") from None
    return TlsaRecord(usage, selector, mtype, data)


def is_usable(record: TlsaRecord) -> bool:
    """Usable for SMTP (RFC 7672 3.1): usage DANE-TA or DANE-EE, selector 0/1, matching
    type 0/1/2, and a digest of the right length."""
    if record.usage not in (2, 3) or record.selector not in (0, 1):
        return False
    if record.mtype not in (0, 1, 2):
        return False
    try:
        data = bytes.fromhex(record.data)
    except ValueError:
        return False
    want = _DIGEST_LEN.get(record.mtype)
    return bool(data) and (want is None or len(data) == want)


def _read_tlv(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at pos."""
    tag = der[pos]
    length = der[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4:
            raise ValueError("unsupported DER length")
        length = int.from_bytes(der[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > len(der):
        raise ValueError("truncated DER")
    return tag, pos, end


def spki_der(cert_der: bytes) -> bytes:
    """The certificate's SubjectPublicKeyInfo exactly as encoded in it (selector 1).

    Read from the DER rather than re-encoded from the key, because a re-encoding can differ
    from the bytes the TLSA digest was made from."""
    try:
        _, cert_start, _ = _read_tlv(cert_der, 0)
        _, pos, tbs_end = _read_tlv(cert_der, cert_start)  # TBSCertificate
        tag, _, end = _read_tlv(cert_der, pos)
        if tag == 0xA0:  # [0] version
            pos = end
        # serial, signature algorithm, issuer, validity, subject
        for _ in range(5):
            _, _, pos = _read_tlv(cert_der, pos)
        tag, _, end = _read_tlv(cert_der, pos)
        if tag != 0x30 or end > tbs_end:
            raise ValueError("no SubjectPublicKeyInfo")
        return cert_der[pos:end]
    except (IndexError, ValueError):
        cert = x509.load_der_x509_certificate(cert_der)
        return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _association(record: TlsaRecord, cert_der: bytes) -> bytes | None:
    """The certificate association data of cert_der for the record's selector/matching."""
    try:
        content = cert_der if record.selector == 0 else spki_der(cert_der)
    except ValueError:
        return None
    if record.mtype == 0:
        return content
    if record.mtype == 1:
        return hashlib.sha256(content).digest()
    return hashlib.sha512(content).digest()


def tlsa_matches(record: TlsaRecord, chain_der: list[bytes]) -> bool:
    """Whether a usable record matches the chain as sent: DANE-EE(3) the leaf only, DANE-TA(2)
    any certificate after the leaf. Unusable records never match."""
    if not is_usable(record) or not chain_der:
        return False
    return _match_index(record, chain_der) is not None


def _match_index(record: TlsaRecord, chain_der: list[bytes]) -> int | None:
    want = bytes.fromhex(record.data)
    candidates = [0] if record.usage == 3 else range(1, len(chain_der))
    for i in candidates:
        if _association(record, chain_der[i]) == want:
            return i
    return None


def _load(der: bytes) -> x509.Certificate | None:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        return None


def _leads_to(certs: list[x509.Certificate | None], ta: int) -> bool:
    """Whether the leaf chains by signatures to certs[ta] through certificates that were sent
    (RFC 7671 5.2.2: the trust anchor must actually sign its way down to the leaf)."""
    current = 0
    seen = {0}
    for _ in range(len(certs)):
        if current == ta:
            return True
        cur = certs[current]
        if cur is None:
            return False
        nxt = None
        for i in [ta] + [j for j in range(1, len(certs)) if j != ta]:
            cand = certs[i]
            if i not in seen and cand is not None and issued_by(cur, cand):
                nxt = i
                break
        if nxt is None:
            return False
        seen.add(nxt)
        current = nxt
    return current == ta


def leaf_names(leaf_der: bytes) -> tuple[str, ...]:
    """The DNS names of the leaf: SAN dNSNames, or the CN when there is no SAN dNSName."""
    cert = _load(leaf_der)
    if cert is None:
        return ()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = tuple(san.value.get_values_for_type(x509.DNSName))
    except (x509.ExtensionNotFound, ValueError):
        names = ()
    if names:
        return names
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return tuple(str(a.value) for a in cns)


async def lookup_tlsa(mx_host: str, port: int, resolver: Resolver) -> TlsaLookup:
    """TLSA records for an MX host, with the answer's status and AD bit.

    RFC 7672 2.2.2 (and RFC 7671 7): when the host's address lookup securely follows a CNAME,
    a DANE sender looks at `_<port>._tcp.<final name>` first and, only when there are no
    records there, at `_<port>._tcp.<mx_host>`. An insecure alias is not followed."""
    host = canonical(mx_host)
    address = await resolver.query(host, "A")
    if not address.cname:
        address = await resolver.query(host, "AAAA")
    if address.cname and address.authenticated and address.cname != host:
        final = await _lookup_at(f"_{port}._tcp.{address.cname}", resolver)
        if final.records or final.unparsed or final.status not in ("NODATA", "NXDOMAIN"):
            return final
    return await _lookup_at(f"_{port}._tcp.{host}", resolver)


async def _lookup_at(name: str, resolver: Resolver) -> TlsaLookup:
    answer = await resolver.query(name, "TLSA")
    records: list[TlsaRecord] = []
    unparsed: list[str] = []
    sources: list[object] = list(answer.rdata) if answer.rdata else list(answer.records)
    for item in sources:
        try:
            records.append(parse_tlsa(item))
        except ValueError:
            unparsed.append(str(item))
    status = answer.status
    if status == "NOERROR" and not records and not unparsed:
        status = "NODATA"
    return TlsaLookup(name, status, answer.authenticated, tuple(records), tuple(unparsed))


def judge_dane(where: Where, lookup: TlsaLookup, chain_der: list[bytes] | None) -> list[Event]:
    """DaneChecked for one MX session, then findings (see findings.md, Domain policies).

    The MX host's zone counts as unsigned when the TLSA answer (records or NODATA/NXDOMAIN)
    carries no AD bit. A DANE-TA match also needs the MX host name in the leaf (RFC 7672
    3.2.2); DaneChecked.ta_name_ok says how that went."""
    records = lookup.records
    usable = [r for r in records if is_usable(r)]
    name = lookup.name
    evidence = (f"dns:{name}/TLSA",)

    def checked(matched: TlsaRecord | None = None, ta_name_ok: bool | None = None) -> DaneChecked:
        return DaneChecked(
            where=where,
            status=lookup.status,
            authenticated=lookup.authenticated,
            records=records,
            matched=matched,
            usable=len(usable),
            ta_name_ok=ta_name_ok,
        )

    def finding(fid: str, summary: str) -> FindingRaised:
        return FindingRaised(raise_finding(fid, where, summary, evidence=evidence))

    status = lookup.status
    if status in _FAILED or status.startswith("ERROR"):
        return [
            checked(),
            finding(
                "dane.lookup_failed",
                f"TLSA lookup of {name} failed ({status}); DANE senders defer mail to {where.host}",
            ),
        ]
    if not records and not lookup.unparsed:
        if lookup.authenticated:
            return [checked()]  # signed zone, no TLSA: DANE simply not used
        return [
            checked(),
            finding(
                "dane.dnssec_unsigned",
                f"no DNSSEC-validated answer for {name}: the zone of {where.host} is not "
                "signed (or the resolver does not validate), so DANE cannot apply",
            ),
        ]
    if not lookup.authenticated:
        return [
            checked(),
            finding(
                "dane.insecure",
                f"{count(len(records), 'TLSA record')} at {name}, but the answer is not "
                "DNSSEC-validated (no AD bit): senders ignore them",
            ),
        ]
    if not usable:
        kinds = ", ".join(sorted({_describe(r) for r in records})) or "unparsable records"
        return [
            checked(),
            finding(
                "dane.unusable",
                f"none of the TLSA records at {name} is usable for SMTP ({kinds}); "
                "DANE senders fall back to unauthenticated TLS",
            ),
        ]
    if not chain_der:
        return [checked()]

    certs = [_load(der) for der in chain_der]
    # RFC 7672 3.2.2: the MX host name, and the CNAME-expanded name when the TLSA records
    # were found there (lookup_tlsa), are both reference identifiers.
    references = {canonical(where.host)}
    base = name.split(".", 2)[2] if name.startswith("_") and name.count(".") >= 2 else ""
    if base:
        references.add(base.lower())
    ta_name_failed: TlsaRecord | None = None
    ta_unchained: TlsaRecord | None = None
    # DANE-EE first: when it matches, names and dates are moot and no TA check is needed.
    for record in sorted(usable, key=lambda r: r.usage != 3):
        idx = _match_index(record, chain_der)
        if idx is None:
            continue
        if record.usage == 3:
            return [checked(matched=record)]
        if not _leads_to(certs, idx):
            ta_unchained = ta_unchained or record
            continue
        names = leaf_names(chain_der[0])
        if any(dane_name_matches(n, ref) for n in names for ref in references):
            return [checked(matched=record, ta_name_ok=True)]
        ta_name_failed = ta_name_failed or record

    if ta_name_failed is not None:
        shown = ", ".join(leaf_names(chain_der[0])[:5]) or "no DNS names"
        return [
            checked(ta_name_ok=False),
            finding(
                "dane.tlsa_mismatch",
                f"DANE-TA record {_short(ta_name_failed)} matches the chain, but the "
                f"certificate does not carry {where.host} ({shown}); DANE senders refuse it "
                "(RFC 7672 3.2.2, 4.7.325 certificate-host-mismatch)",
            ),
        ]
    summary = f"none of the {count(len(usable), 'usable TLSA record')} at {name} matches the chain"
    if ta_unchained is not None:
        summary += (
            f"; DANE-TA record {_short(ta_unchained)} matches a certificate that was sent, "
            "but that certificate does not sign its way down to the server certificate"
        )
    return [checked(), finding("dane.tlsa_mismatch", summary)]


def _describe(record: TlsaRecord) -> str:
    if record.usage in (0, 1):
        return f"usage {record.usage} {USAGE_NAMES[record.usage]} is not used for SMTP"
    if record.usage not in (2, 3):
        return f"unknown usage {record.usage}"
    if record.selector not in (0, 1):
        return f"unknown selector {record.selector}"
    if record.mtype not in (0, 1, 2):
        return f"unknown matching type {record.mtype}"
    return f"data of the wrong length for matching type {record.mtype}"


def _short(record: TlsaRecord) -> str:
    data = record.data if len(record.data) <= 16 else record.data[:16] + "..."
    return f"{record.usage} {record.selector} {record.mtype} {data}"
