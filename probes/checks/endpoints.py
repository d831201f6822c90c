"""CA endpoints: can this host reach the OCSP responders, CRLs and caIssuers of a chain?

This is what `certutil -URL` shows a Windows admin, and what decides whether a sender that
checks revocation (Exchange Online CertificateValidation, Exchange on-premises) fails with
RevocationCheckFailure. Every URL is fetched concurrently; the answers are checked, not just
the reachability: an OCSP answer must be signed by the issuer or its delegated responder and
be fresh; a CRL must be signed by the issuer and not past nextUpdate.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from probes.checks.certificates import cert_info, load_certificates
from probes.checks.chain import issued_by, verify_signature
from probes.model.events import (
    ChainLink,
    EndpointChecked,
    EndpointKind,
    Event,
    Finding,
    FindingRaised,
    Where,
)
from probes.model.findings import raise_finding
from probes.model.options import Options
from probes.model.wording import count
from probes.net.http import Fetcher, HttpResult

OCSP_MAX_BYTES = 200_000
CRL_MAX_BYTES = 30_000_000  # large public CRLs run to tens of MB
AIA_MAX_BYTES = 1_000_000
# A certificate names one or two URLs of each kind; a hostile one names thousands. Past these
# caps URLs are listed in one ca.endpoint_not_fetched finding, never fetched.
MAX_URLS_PER_KIND = 4  # per certificate and kind (OCSP, CRL, caIssuers)
MAX_URLS_PER_DIAGNOSIS = 40  # distinct fetches over all chains of one diagnosis
_BUDGET_KEY = " fetches"  # where the diagnosis's fetch count lives in the shared cache
CLOCK_SKEW = timedelta(minutes=5)
# CA/Browser Forum Baseline Requirements: short-lived subscriber certificates (validity of
# 10 days or less) need not carry OCSP or CRL pointers, so their absence is no fault.
SHORT_LIVED = timedelta(days=10)

CertStatus = Literal["good", "revoked", "unknown"]
_UNREACHABLE = {
    "ocsp": "ca.ocsp_unreachable",
    "crl": "ca.crl_unreachable",
    "ca_issuers": "ca.issuer_unreachable",
}


@dataclass
class _Outcome:
    """The judgement of one (certificate, URL) pair."""

    event: EndpointChecked
    findings: list[Finding] = field(default_factory=list)
    reachable: bool = False  # network-level success (an answer came back)
    usable: bool = False  # the answer was valid and could be relied on
    refused: bool = False  # not fetched on purpose: says nothing about reachability


def _label(cert: x509.Certificate) -> str:
    info = cert_info(cert)
    return f"CN={info.common_name}" if info.common_name else info.subject


def _sha256(cert: x509.Certificate) -> str:
    return cert_info(cert).sha256


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _iso(moment: datetime) -> str:
    return _utc(moment).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _in_days(moment: datetime, now: datetime) -> str:
    delta = _utc(moment) - now
    if delta.total_seconds() < 0:
        # timedelta.days floors: 26 hours ago is days == -2; count whole days elapsed.
        ago = int(-delta.total_seconds() // 86400)
        return f"{count(ago, 'day')} ago" if ago >= 1 else "less than a day ago"
    hours = delta.total_seconds() / 3600
    if delta.days >= 1:
        return f"in {count(delta.days, 'day')}"
    return f"in {count(round(hours), 'hour')}"


def _responder_matches(resp: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    if resp.responder_name is not None:
        return resp.responder_name.public_bytes() == cert.subject.public_bytes()
    if resp.responder_key_hash is not None:
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # The key hash is SHA-1 of the BIT STRING contents of the key (RFC 6960 4.2.1); the
        # SPKI DER ends with exactly those bytes, so compare against every plausible suffix.
        digest = resp.responder_key_hash
        key_bits = _spki_key_bits(spki)
        h = hashes.Hash(hashes.SHA1())
        h.update(key_bits)
        return h.finalize() == digest
    return False


def _spki_key_bits(spki: bytes) -> bytes:
    """The subjectPublicKey BIT STRING contents (without the unused-bits byte) of an SPKI."""
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    load_der_public_key(spki)  # validates it is an SPKI at all

    def read_len(data: bytes, pos: int) -> tuple[int, int]:
        first = data[pos]
        if first < 0x80:
            return first, pos + 1
        n = first & 0x7F
        return int.from_bytes(data[pos + 1 : pos + 1 + n], "big"), pos + 1 + n

    # SEQUENCE { AlgorithmIdentifier SEQUENCE, BIT STRING }
    _, pos = read_len(spki, 1)
    alg_len, alg_body = read_len(spki, pos + 1)
    pos = alg_body + alg_len
    bits_len, bits_body = read_len(spki, pos + 1)
    return spki[bits_body + 1 : bits_body + bits_len]


def _ocsp_signer_ok(
    resp: ocsp.OCSPResponse, issuer: x509.Certificate, now: datetime
) -> tuple[bool, str]:
    """Is the OCSP answer signed by the issuer, or by a responder the issuer delegated to?"""
    algo = resp.signature_hash_algorithm
    if _responder_matches(resp, issuer):
        if verify_signature(issuer.public_key(), resp.signature, resp.tbs_response_bytes, algo):
            return True, "signed by the issuer"
        return False, "bad signature (claims to be signed by the issuer)"
    for responder in resp.certificates:
        if not _responder_matches(resp, responder):
            continue
        if not issued_by(responder, issuer):
            return False, "the responder certificate is not issued by the certificate's issuer"
        try:
            eku = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            return False, "the responder certificate lacks the OCSPSigning key usage"
        if ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
            return False, "the responder certificate lacks the OCSPSigning key usage"
        if not _utc(responder.not_valid_before_utc) <= now <= _utc(responder.not_valid_after_utc):
            return False, "the responder certificate is outside its validity period"
        if verify_signature(responder.public_key(), resp.signature, resp.tbs_response_bytes, algo):
            return True, "signed by a delegated responder"
        return False, "bad signature by the delegated responder"
    return False, "signed by a responder that is neither the issuer nor delegated by it"


def _same_cert_id(
    resp: ocsp.OCSPResponse, cert: x509.Certificate, issuer: x509.Certificate
) -> bool:
    """The answer's CertID names this issuer (name and key hash), not only this serial: two
    CAs can issue the same serial number (RFC 6960 4.1.1)."""
    ours = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, resp.hash_algorithm).build()
    return (
        ours.issuer_name_hash == resp.issuer_name_hash
        and ours.issuer_key_hash == resp.issuer_key_hash
    )


def judge_ocsp(
    body: bytes, cert: x509.Certificate, issuer: x509.Certificate | None, now: datetime
) -> tuple[CertStatus | None, str | None, str]:
    """Judge an OCSP answer. Returns (status or None, problem or None, detail text)."""
    try:
        resp = ocsp.load_der_ocsp_response(body)
    except Exception as exc:  # noqa: BLE001 - any garbage body
        return None, f"not an OCSP response ({' '.join(str(exc).split())[:80]})", ""
    if resp.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        name = resp.response_status.name.lower()
        return None, f"the responder answered {name}", ""
    try:
        if resp.serial_number != cert.serial_number:
            return None, "the answer is about another certificate (serial differs)", ""
        if issuer is not None and not _same_cert_id(resp, cert, issuer):
            return None, "the answer is about another CA's certificate (CertID issuer differs)", ""
        if issuer is not None:
            ok, why = _ocsp_signer_ok(resp, issuer, now)
            if not ok:
                return None, why, ""
        this_update = _utc(resp.this_update_utc)
        next_update = resp.next_update_utc
        status_enum = resp.certificate_status
    except Exception as exc:  # noqa: BLE001 - multi-response or odd answers
        return None, f"unreadable OCSP answer ({' '.join(str(exc).split())[:80]})", ""
    if this_update > now + CLOCK_SKEW:
        return None, f"thisUpdate {_iso(this_update)} is in the future", ""
    if next_update is not None and _utc(next_update) < now:
        return None, f"stale: nextUpdate {_iso(next_update)} has passed", ""
    if status_enum == ocsp.OCSPCertStatus.GOOD:
        status: CertStatus = "good"
    elif status_enum == ocsp.OCSPCertStatus.REVOKED:
        status = "revoked"
    else:
        status = "unknown"
    detail: str = str(status)
    if status == "revoked":
        when = resp.revocation_time_utc
        reason = resp.revocation_reason
        detail += f" since {_iso(when)}" if when else ""
        detail += f" ({reason.name})" if reason is not None else ""
    if next_update is not None:
        detail += f", next update {_in_days(next_update, now)}"
    if issuer is None:
        detail += ", signature not checked (issuer unknown)"
    return status, None, detail


def _load_crl(body: bytes) -> x509.CertificateRevocationList:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if body.lstrip().startswith(b"-----"):
            return x509.load_pem_x509_crl(body.strip())
        return x509.load_der_x509_crl(body)


def judge_crl(
    body: bytes, cert: x509.Certificate, issuer: x509.Certificate | None, now: datetime
) -> tuple[CertStatus | None, str | None, str]:
    """Judge a CRL for cert. Returns (status or None, problem or None, detail text)."""
    try:
        crl = _load_crl(body)
    except Exception as exc:  # noqa: BLE001
        return None, f"not a CRL ({' '.join(str(exc).split())[:80]})", ""
    if crl.issuer.public_bytes() != cert.issuer.public_bytes():
        return None, "the CRL is issued by another CA than the certificate", ""
    if issuer is not None:
        try:
            valid = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - unsupported key type
            valid = False
        if not valid:
            return None, "bad signature (not signed by the issuing CA)", ""
    next_update = crl.next_update_utc
    if next_update is not None and _utc(next_update) < now:
        return None, f"stale: nextUpdate {_iso(next_update)} has passed", ""
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    entries = len(crl)
    if entry is not None:
        status: CertStatus = "revoked"
        detail = f"revoked since {_iso(entry.revocation_date_utc)}"
    else:
        status = "good"
        detail = "not listed"
    detail += f"; CRL of {count(entries, 'entry', 'entries')}"
    if next_update is not None:
        detail += f", next update {_in_days(next_update, now)}"
    if issuer is None:
        detail += ", signature not checked (issuer unknown)"
    return status, None, detail


def _find_issuer(certs: list[x509.Certificate], index: int) -> x509.Certificate | None:
    cert = certs[index]
    order = certs[index + 1 :] + certs[:index]
    for cand in order:
        if issued_by(cert, cand):
            return cand
    return None


def _is_root(cert: x509.Certificate) -> bool:
    return cert.subject.public_bytes() == cert.issuer.public_bytes() and issued_by(cert, cert)


async def _cached(cache: dict[str, Any], key: str, make: Awaitable[HttpResult]) -> HttpResult:
    """Fetch once per key, even when sessions ask at the same moment. `make` is awaited only
    when no finished or running fetch for key exists (otherwise it is closed unused)."""
    existing = cache.get(key)
    if isinstance(existing, HttpResult):
        _discard(make)
        return existing
    if isinstance(existing, asyncio.Future):
        try:
            result: HttpResult = await asyncio.shield(existing)
            _discard(make)
            return result
        except asyncio.CancelledError:
            if not existing.cancelled():
                _discard(make)
                raise  # we were cancelled ourselves
            # the session that was fetching was cancelled: fetch here instead
        except Exception:  # noqa: BLE001 - the other fetch failed oddly: try ourselves
            pass
    future: asyncio.Future[HttpResult] = asyncio.get_running_loop().create_future()
    cache[key] = future
    try:
        result = await make
    except BaseException:
        cache.pop(key, None)
        future.cancel()
        raise
    future.set_result(result)
    cache[key] = result
    return result


def _discard(make: Awaitable[HttpResult]) -> None:
    if asyncio.iscoroutine(make):
        make.close()


class _Check:
    def __init__(
        self, fetcher: Fetcher, where: Where, cache: dict[str, Any], now: datetime
    ) -> None:
        self.fetcher = fetcher
        self.where = where
        self.cache = cache
        self.now = now

    def _event(
        self,
        kind: EndpointKind,
        url: str,
        cert: x509.Certificate,
        result: HttpResult | None,
        *,
        ok: bool,
        error: str | None,
        detail: str | None,
        status: CertStatus | None = None,
    ) -> EndpointChecked:
        return EndpointChecked(
            kind=kind,
            url=url,
            host=urlsplit(url).hostname or "",
            ok=ok,
            status=result.status if result else None,
            ms=result.ms if result else None,
            error=error,
            detail=detail,
            for_cert=_sha256(cert),
            cert_status=status,
            addresses=result.addresses if result else (),
            size=len(result.body) if result and result.body else None,
            where=self.where,
        )

    def _may_fetch(self, kind: EndpointKind, url: str, cert: x509.Certificate) -> bool:
        """Count a new distinct fetch against the diagnosis's budget (a cached one is free)."""
        key = f"ocsp {url} {_sha256(cert)}" if kind == "ocsp" else f"{kind} {url}"
        if key in self.cache:
            return True
        spent: int = self.cache.get(_BUDGET_KEY, 0)
        if spent >= MAX_URLS_PER_DIAGNOSIS:
            return False
        self.cache[_BUDGET_KEY] = spent + 1
        return True

    def _finding(self, fid: str, summary: str, url: str, index: int) -> Finding:
        return raise_finding(
            fid, self.where, summary, evidence=(f"endpoint:{url}", f"cert:{index}")
        )

    async def run(
        self,
        kind: EndpointKind,
        url: str,
        index: int,
        cert: x509.Certificate,
        issuer: x509.Certificate | None,
    ) -> _Outcome:
        label = _label(cert)
        if not url.lower().startswith(("http://", "https://")):
            ev = self._event(kind, url, cert, None, ok=False, error="not an http URL", detail=None)
            fid = _UNREACHABLE[kind]
            return _Outcome(
                ev, [self._finding(fid, f"{url} of {label}: not an http URL", url, index)]
            )
        if not self._may_fetch(kind, url, cert):
            ev = self._event(
                kind,
                url,
                cert,
                None,
                ok=False,
                error=f"not fetched (at most {MAX_URLS_PER_DIAGNOSIS} fetches per diagnosis)",
                detail=None,
            )
            summary = f"{url} (of {label}) was not fetched: this diagnosis's fetches are spent"
            return _Outcome(
                ev, [self._finding("ca.endpoint_not_fetched", summary, url, index)], refused=True
            )
        if kind == "ocsp":
            request: bytes | None = None
            if issuer is not None:
                try:
                    req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())
                    request = req.build().public_bytes(serialization.Encoding.DER)
                except Exception:  # noqa: BLE001 - odd key types: fall through
                    request = None
            if request is None:
                ev = self._event(
                    kind,
                    url,
                    cert,
                    None,
                    ok=False,
                    error=None,
                    detail="not asked: the issuer certificate is unknown",
                )
                return _Outcome(ev)
            key = f"ocsp {url} {_sha256(cert)}"
            result = await _cached(
                self.cache,
                key,
                self.fetcher.get(
                    url,
                    method="POST",
                    body=request,
                    content_type="application/ocsp-request",
                    max_bytes=OCSP_MAX_BYTES,
                ),
            )
        elif kind == "crl":
            result = await _cached(
                self.cache, f"crl {url}", self.fetcher.get(url, max_bytes=CRL_MAX_BYTES)
            )
        else:
            result = await _cached(
                self.cache, f"ca_issuers {url}", self.fetcher.get(url, max_bytes=AIA_MAX_BYTES)
            )

        if result.refused:
            ev = self._event(kind, url, cert, result, ok=False, error=result.error, detail=None)
            summary = f"{url} (of {label}): {result.error}"
            return _Outcome(
                ev, [self._finding("ca.endpoint_not_fetched", summary, url, index)], refused=True
            )
        if not result.ok:
            ev = self._event(kind, url, cert, result, ok=False, error=result.error, detail=None)
            what = {"ocsp": "OCSP responder", "crl": "CRL", "ca_issuers": "caIssuers URL"}[kind]
            summary = f"{what} {url} (of {label}) cannot be reached: {result.error}"
            return _Outcome(ev, [self._finding(_UNREACHABLE[kind], summary, url, index)])

        if kind == "ca_issuers":
            certs = load_certificates(result.body)
            if not certs:
                ev = self._event(
                    kind,
                    url,
                    cert,
                    result,
                    ok=False,
                    error="no certificate in the answer",
                    detail=None,
                )
                summary = f"caIssuers URL {url} (of {label}) answered, but with no certificate"
                return _Outcome(
                    ev, [self._finding("ca.issuer_unreachable", summary, url, index)], True
                )
            got = certs[0]
            matches = got.subject.public_bytes() == cert.issuer.public_bytes()
            detail = f"{_label(got)}" + (
                " (the issuer)" if matches else " (does not match the issuer name)"
            )
            ev = self._event(kind, url, cert, result, ok=True, error=None, detail=detail)
            return _Outcome(ev, [], True, True)

        judge = judge_ocsp if kind == "ocsp" else judge_crl
        status, problem, detail = judge(result.body, cert, issuer, self.now)
        if problem is not None:
            ev = self._event(kind, url, cert, result, ok=False, error=problem, detail=None)
            fid = "ca.ocsp_invalid" if kind == "ocsp" else "ca.crl_invalid"
            what = "OCSP answer from" if kind == "ocsp" else "CRL"
            summary = f"{what} {url} (for {label}) is unusable: {problem}"
            return _Outcome(ev, [self._finding(fid, summary, url, index)], True)
        ev = self._event(kind, url, cert, result, ok=True, error=None, detail=detail, status=status)
        # A revoked status is not a finding yet: OCSP and the CRL often both say so, and
        # check_endpoints raises one cert.revoked per certificate naming every source.
        return _Outcome(ev, [], True, True)


async def check_endpoints(
    path: list[ChainLink],
    fetcher: Fetcher,
    options: Options,
    *,
    where: Where,
    cache: dict[str, Any],
    now: datetime | None = None,
) -> AsyncIterator[Event]:
    """Check every OCSP, CRL and caIssuers URL of every non-root certificate in path.

    Yields an EndpointChecked per (certificate, URL) as each fetch finishes, with findings
    right after it, then per-certificate findings (ca.revocation_unavailable). `cache` is
    shared by the sessions of one diagnosis so that each URL is fetched only once.
    """
    del options  # timeouts and proxies live in the fetcher; kept for a uniform probe API
    moment = now or datetime.now(timezone.utc)
    certs: list[x509.Certificate] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for link in path:
            try:
                certs.append(x509.load_der_x509_certificate(link.cert.der))
            except Exception:  # noqa: BLE001
                break  # a broken link ends what can be judged
    check = _Check(fetcher, where, cache, moment)
    jobs: list[tuple[int, EndpointKind, str]] = []
    per_cert: dict[int, list[_Outcome]] = {}
    early: list[Finding] = []
    for index, cert in enumerate(certs):
        info = path[index].cert
        if _is_root(cert):
            continue
        if not info.ocsp_urls and not info.crl_urls:
            lifetime = _utc(cert.not_valid_after_utc) - _utc(cert.not_valid_before_utc)
            if lifetime > SHORT_LIVED:
                early.append(
                    raise_finding(
                        "ca.no_revocation_info",
                        where,
                        f"{_label(cert)} names neither an OCSP responder nor a CRL",
                        evidence=(f"cert:{index}",),
                    )
                )
        kinds: tuple[tuple[EndpointKind, tuple[str, ...]], ...] = (
            ("ocsp", info.ocsp_urls),
            ("crl", info.crl_urls),
            ("ca_issuers", info.ca_issuers_urls),
        )
        for kind, urls in kinds:
            unique = list(dict.fromkeys(urls))
            jobs += [(index, kind, url) for url in unique[:MAX_URLS_PER_KIND]]
            if len(unique) > MAX_URLS_PER_KIND:
                rest = unique[MAX_URLS_PER_KIND:]
                shown = ", ".join(rest[:3]) + (
                    f" and {len(rest) - 3} more" if len(rest) > 3 else ""
                )
                early.append(
                    raise_finding(
                        "ca.endpoint_not_fetched",
                        where,
                        f"{_label(cert)} names {len(unique)} {kind} URLs; only the first "
                        f"{MAX_URLS_PER_KIND} were fetched, not {shown}",
                        evidence=(f"cert:{index}",),
                    )
                )
        per_cert[index] = []

    for finding in early:
        yield FindingRaised(finding)
    if not jobs:
        return

    async def one(index: int, kind: EndpointKind, url: str) -> tuple[int, EndpointKind, _Outcome]:
        issuer = _find_issuer(certs, index)
        return index, kind, await check.run(kind, url, index, certs[index], issuer)

    tasks = [asyncio.ensure_future(one(i, k, u)) for i, k, u in jobs]
    try:
        for next_done in asyncio.as_completed(tasks):
            index, kind, outcome = await next_done
            if kind != "ca_issuers":
                per_cert[index].append(outcome)
            yield outcome.event
            for finding in outcome.findings:
                yield FindingRaised(finding)
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()

    for index, outcomes in per_cert.items():
        said_revoked = [o.event for o in outcomes if o.event.cert_status == "revoked"]
        if said_revoked:
            sources = "; ".join(
                f"{'OCSP responder' if e.kind == 'ocsp' else 'CRL'} {e.url} says {e.detail}"
                for e in said_revoked
            )
            yield FindingRaised(
                raise_finding(
                    "cert.revoked",
                    where,
                    f"{_label(certs[index])} is revoked: {sources}",
                    evidence=tuple(f"endpoint:{e.url}" for e in said_revoked) + (f"cert:{index}",),
                )
            )
        tried = [o for o in outcomes if not o.refused]
        if tried and not any(o.reachable for o in tried):
            listed = ", ".join(o.event.url for o in tried)
            yield FindingRaised(
                raise_finding(
                    "ca.revocation_unavailable",
                    where,
                    f"no revocation source of {_label(certs[index])} can be reached ({listed})",
                    evidence=(f"cert:{index}",),
                )
            )
