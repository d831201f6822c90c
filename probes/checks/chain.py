"""Chain building and validation: issuer search (sent, caIssuers, store), signatures, dates, trust.

A hostile server chooses what it sends, so path building has a budget: at most MAX_SENT sent
certificates are considered, candidates with the same (subject, key, issuer) count once, a
path never holds the same (subject, key) twice (RFC 4158 loop detection), issuer lookups and
dead ends are memoised, and at most MAX_SIGNATURE_CHECKS signatures are checked (Go's
crypto/x509 caps chain building the same way). The CPU work runs in a thread with the
per-step timeout as its deadline, so the event loop (and the UI) never waits for it.
"""

from __future__ import annotations

import asyncio
import re
import threading
import warnings
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from probes.model.events import (
    CertInfo,
    CertSource,
    ChainLink,
    ChainValidated,
    Event,
    FindingRaised,
    Where,
)
from probes.model.findings import raise_finding
from probes.model.names import cert_matches, expected_name_matches
from probes.model.options import Options
from probes.model.wording import count

if TYPE_CHECKING:
    from probes.net.http import Fetcher
    from probes.net.trust import Roots

from probes.checks.certificates import (
    EXPIRES_SOON,
    MAX_AIA_LEVELS,
    MAX_DEPTH,
    WEAK_HASHES,
    _aia,
    _der,
    _label,
    _not_after,
    _not_before,
    _safe,
    cert_info,
    has_san_extension,
    load_certificates,
)


def verify_signature(key: object, signature: bytes, data: bytes, algo: object) -> bool:
    """Check a raw signature with a public key of any common type (PKCS#1 v1.5 for RSA)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import padding

    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), algo)  # type: ignore[arg-type]
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(algo))  # type: ignore[arg-type]
        elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(signature, data)
        elif isinstance(key, dsa.DSAPublicKey):
            key.verify(signature, data, algo)  # type: ignore[arg-type]
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    except Exception:  # noqa: BLE001 - UnsupportedAlgorithm and the like
        return False
    return True


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Name and signature check by hand. Unlike the path verifier this accepts SHA-1, MD5 and
    small keys, so weak chains can be told apart from untrusted ones."""
    if cert.issuer.public_bytes() != issuer.subject.public_bytes():
        return False
    from cryptography.exceptions import InvalidSignature

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            cert.verify_directly_issued_by(issuer)
            return True
        except InvalidSignature:
            return False
        except Exception:  # noqa: BLE001
            # cryptography refuses SHA-1/MD5 signature algorithms outright; check by hand.
            pass
        try:
            algo = cert.signature_hash_algorithm
            key = issuer.public_key()
        except Exception:  # noqa: BLE001
            return False
        return verify_signature(key, cert.signature, cert.tbs_certificate_bytes, algo)


# Real chains are 2-4 certificates; anything past this many is not looked at.
MAX_SENT = 10
# Signature checks allowed for one chain's path building (Go's crypto/x509 allows 100).
MAX_SIGNATURE_CHECKS = 100


def _identity(cert: x509.Certificate) -> tuple[bytes, bytes]:
    """(subject, public key): two certificates with both equal are the same CA to a path."""
    from cryptography.hazmat.primitives import serialization

    try:
        key = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except Exception:  # noqa: BLE001 - an unsupported key: its DER stands in for it
        key = _der(cert)
    return cert.subject.public_bytes(), key


class _Pool:
    """Candidate certificates, each with where it came from, and the path-building budget."""

    def __init__(self, roots: list[x509.Certificate]) -> None:
        self.roots = roots
        self.root_ders = {_der(c) for c in roots}
        self.extra: list[tuple[x509.Certificate, CertSource]] = []
        self._seen: set[tuple[bytes, bytes, bytes]] = set()
        self._issuers: dict[bytes, list[tuple[x509.Certificate, CertSource]]] = {}
        self._lock = threading.Lock()
        self.signature_checks = 0
        self.exhausted = False  # the budget ran out: no path found is then not a verdict
        self.stopped = False  # the caller's deadline passed: give up at the next step

    def add(self, cert: x509.Certificate, source: CertSource) -> None:
        subject, key = _identity(cert)
        seen = (subject, key, cert.issuer.public_bytes())
        if seen in self._seen:
            return
        with self._lock:
            self._seen.add(seen)
            self.extra.append((cert, source))
            self._issuers.clear()  # a new candidate can be anyone's issuer

    def _issued_by(self, cert: x509.Certificate, issuer: x509.Certificate) -> bool:
        if self.stopped or self.signature_checks >= MAX_SIGNATURE_CHECKS:
            self.exhausted = True
            return False
        self.signature_checks += 1
        return issued_by(cert, issuer)

    def issuers_of(self, cert: x509.Certificate) -> list[tuple[x509.Certificate, CertSource]]:
        der = _der(cert)
        with self._lock:
            cached = self._issuers.get(der)
            if cached is not None:
                return cached
            # Store roots first so a path ends at a trust anchor as early as it can (a sent
            # cross-signed copy of a root would otherwise lead to an older, distrusted root).
            found: list[tuple[x509.Certificate, CertSource]] = []
            name = cert.issuer.public_bytes()
            for root in self.roots:
                if root.subject.public_bytes() == name and self._issued_by(cert, root):
                    found.append((root, "store"))
            for cand, source in self.extra:
                if cand.subject.public_bytes() == name and self._issued_by(cert, cand):
                    found.append((cand, source))
            self._issuers[der] = found
            return found

    def build(self, leaf: x509.Certificate) -> list[tuple[x509.Certificate, CertSource]] | None:
        """A path leaf -> store root by names and signatures only, or None."""
        if _der(leaf) in self.root_ders:
            return [(leaf, "store")]
        dead: set[bytes] = set()  # certificates from which no path was found

        def walk(
            path: list[tuple[x509.Certificate, CertSource]],
        ) -> list[tuple[x509.Certificate, CertSource]] | None:
            if len(path) > MAX_DEPTH or self.stopped:
                return None
            current = path[-1][0]
            used = {_identity(c) for c, _ in path}
            for cand, source in self.issuers_of(current):
                cder = _der(cand)
                if cder in self.root_ders:
                    return [*path, (cand, "store")]
                if cder in dead or _identity(cand) in used:
                    continue
                found = walk([*path, (cand, source)])
                if found is not None:
                    return found
                dead.add(cder)
            return None

        return walk([(leaf, "sent")])

    def dead_end(self, leaf: x509.Certificate) -> x509.Certificate:
        """The certificate whose issuer is missing: follow the first issuer found each step."""
        current = leaf
        seen = {_der(leaf)}
        for _ in range(MAX_DEPTH):
            nxt = [c for c, _ in self.issuers_of(current) if _der(c) not in seen]
            if not nxt:
                return current
            current = nxt[0]
            seen.add(_der(current))
        return current


def _verifier_path(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    roots: list[x509.Certificate],
    moment: datetime,
) -> tuple[list[x509.Certificate] | None, str | None]:
    """Run cryptography's path validation at `moment`. Returns (chain, None) or (None, error).

    Why a client verifier with a permissive end-entity policy: a server verifier checks the
    name, the leaf's EKU and the SAN's presence, and then a wrong name, a missing SAN or a
    clientAuth-only leaf would all come back as one opaque "validation failed". We check
    those ourselves (RFC 9525 matcher, EKU, SAN) so each gives its own finding, and let the
    verifier judge only the path: signatures, dates, CA basic constraints, path length,
    name constraints. The CA policy is WebPKI's minus the EKU check, which in a client
    verifier would demand clientAuth of intermediates that rightly only carry serverAuth.
    """
    from cryptography.x509.verification import (
        Criticality,
        ExtensionPolicy,
        PolicyBuilder,
        Store,
    )

    if not roots:
        return None, "the trust store is empty"
    try:
        ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(
            x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None
        )
        verifier = (
            PolicyBuilder()
            .store(Store(roots))
            .time(moment)
            .max_chain_depth(MAX_DEPTH)
            .extension_policies(ca_policy=ca_policy, ee_policy=ExtensionPolicy.permit_all())
            .build_client_verifier()
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = verifier.verify(leaf, intermediates)
    except Exception as exc:  # noqa: BLE001 - VerificationError, or an unsupported certificate
        return None, _verifier_message(exc)
    return list(result.chain), None


_ENCOUNTERED = re.compile(
    r"\s*\(encountered processing <Certificate\(subject=<Name\((?P<name>[^)]*)\)>.*$"
)


def _verifier_message(exc: Exception) -> str:
    """cryptography's message without the Python repr of the certificate it names:
    "cert is not valid at validation time (at CN=mx1.example.org)"."""
    text = " ".join(str(exc).split())
    text = _ENCOUNTERED.sub(lambda m: f" (at {m.group('name')})", text)
    if text.startswith("validation failed: "):
        text = text[len("validation failed: ") :]
    return text[:300] or type(exc).__name__


def _window(certs: list[x509.Certificate]) -> datetime | None:
    """A moment at which every certificate in certs is within its validity, if there is one."""
    start = max(_not_before(c) for c in certs)
    end = min(_not_after(c) for c in certs)
    if start >= end:
        return None
    return start + (end - start) / 2


T = TypeVar("T")


def _unreadable_part(cert: x509.Certificate) -> str | None:
    """Why a loaded certificate cannot be fully parsed (its extensions, names, key), or None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for ext in cert.extensions:
                _ = ext.value
            cert.subject.rfc4514_string()
            cert.issuer.rfc4514_string()
            cert.public_key()
    except Exception as exc:  # noqa: BLE001 - any parse error is the answer
        return " ".join(str(exc).split())[:200] or type(exc).__name__
    return None


async def _off_loop(pool: _Pool, work: Callable[[], T], late: T, deadline: float) -> T:
    """Run CPU-bound chain work in a thread, so the event loop keeps answering; past the
    deadline the pool is told to stop (the thread ends at its next step) and `late` is the
    result."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(work), deadline)
    except asyncio.TimeoutError:
        pool.stopped = True
        pool.exhausted = True
        return late


async def _fetch_issuers(
    cert: x509.Certificate, fetcher: Fetcher, notes: list[str]
) -> list[x509.Certificate]:
    no_urls: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
    _, urls = _safe(lambda: _aia(cert), no_urls)
    found: list[x509.Certificate] = []
    for url in urls:
        if not url.lower().startswith(("http://", "https://")):
            notes.append(f"caIssuers {url}: not an http URL")
            continue
        result = await fetcher.get(url, max_bytes=200_000)
        if not result.ok:
            notes.append(f"caIssuers {url}: {result.error}")
            continue
        certs = load_certificates(result.body)
        if not certs:
            notes.append(f"caIssuers {url}: no certificate in the answer")
        found.extend(certs)
    return found


async def validate_chain(
    where: Where,
    sent: list[CertInfo],
    options: Options,
    *,
    names: list[str],
    fetcher: Fetcher,
    roots: Roots,
    now: datetime | None = None,
    leaf_role: str = "the server certificate",
    supplier: str = "the server",
    server_eku: bool = True,
) -> AsyncIterator[Event]:
    """Validate the chain a server sent. Yields one ChainValidated, then one FindingRaised per
    problem. Each problem is judged on its own (dates, trust, names, keys, signatures, EKU), so
    an expired certificate is reported as expired and not also as untrusted.

    A sending server's client chain (`mxlens listen`) and a certificate file (`mxlens cert`)
    are validated by this same code: `leaf_role` and `supplier` only change the wording of the
    summaries ("the client certificate", "the sender did not send"), and `server_eku=False`
    leaves the serverAuth check out for a certificate that only has to authenticate a client."""
    moment = now or datetime.now(timezone.utc)
    if not sent:
        yield ChainValidated(
            where, False, (), "no certificate received", roots.description, tuple(names), None
        )
        return
    loaded: list[x509.Certificate] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for info in sent:
            try:
                loaded.append(x509.load_der_x509_certificate(info.der))
            except Exception:  # noqa: BLE001
                if not loaded:
                    break  # an unreadable leaf: nothing below can be judged
    if not loaded:
        yield ChainValidated(
            where,
            False,
            tuple(ChainLink(c, "sent") for c in sent),
            f"{leaf_role} cannot be parsed",
            roots.description,
            tuple(names),
            None,
        )
        # OpenSSL-based senders may accept what cryptography cannot read; that is no reason
        # to call it "OK": nothing about this certificate was checked.
        yield FindingRaised(
            raise_finding(
                "cert.unparseable",
                where,
                f"{leaf_role} ({sent[0].sha256[:16]}...) cannot be parsed: "
                f"{sent[0].subject.removeprefix('(unparsable certificate: ').rstrip(')')}",
                evidence=("cert:0",),
            )
        )
        return
    leaf = loaded[0]
    leaf_info = sent[0]
    unreadable = _unreadable_part(leaf)
    pool = _Pool(list(roots.certs))
    for cert in loaded[1 : 1 + MAX_SENT]:
        pool.add(cert, "sent")

    findings: list[tuple[str, str, int]] = []  # (id, summary, index in the path)
    notes: list[str] = []
    if unreadable is not None:
        # cryptography loads lazily: a leaf can load and still fail on its extensions, and
        # then no name, usage or constraint of it was really checked.
        findings.append(
            (
                "cert.unparseable",
                f"{leaf_role} ({_label(leaf_info)}) cannot be parsed: {unreadable}",
                0,
            )
        )
    if len(loaded) > 1 + MAX_SENT:
        notes.append(f"only the first {MAX_SENT} of {len(loaded) - 1} sent CA certificates read")
    deadline = options.timeout

    async def build() -> list[tuple[x509.Certificate, CertSource]] | None:
        return await _off_loop(pool, lambda: pool.build(leaf), None, deadline)

    path = await build()
    incomplete = False
    if path is None:
        # Fetch the missing issuer(s) the way browsers do: follow caIssuers upwards.
        for _ in range(MAX_AIA_LEVELS):
            top = pool.dead_end(leaf)
            if _der(top) in pool.root_ders or issued_by(top, top):
                break
            fetched = await _fetch_issuers(top, fetcher, notes)
            before = len(pool.extra)
            for cert in fetched:
                pool.add(cert, "aia")
            path = await build()
            if path is not None or len(pool.extra) == before:
                break
        incomplete = path is not None

    # The certificates the date, key and signature checks look at.
    if path is not None:
        examined = path
    else:
        examined = [(c, s) for c, s in [(leaf, "sent"), *pool.extra]]
    infos = [sent[0] if i == 0 else cert_info(c) for i, (c, _) in enumerate(examined)]
    links = tuple(ChainLink(info, src) for info, (_, src) in zip(infos, examined, strict=True))

    # Dates, for every certificate that matters.
    date_problem = False
    for i, (cert, _src) in enumerate(examined):
        info = infos[i]
        role = leaf_role if i == 0 else f"chain certificate {i}"
        if _not_after(cert) < moment:
            date_problem = True
            findings.append(
                ("cert.expired", f"{role} ({_label(info)}) expired on {info.not_after}", i)
            )
        elif _not_before(cert) > moment:
            date_problem = True
            findings.append(
                (
                    "cert.not_yet_valid",
                    f"{role} ({_label(info)}) is not valid before {info.not_before}",
                    i,
                )
            )
    if _not_before(leaf) <= moment <= _not_after(leaf) and _not_after(leaf) - moment < EXPIRES_SOON:
        days = (_not_after(leaf) - moment).days
        findings.append(
            (
                "cert.expires_soon",
                f"{leaf_role} ({_label(leaf_info)}) expires on "
                f"{leaf_info.not_after} (in {count(days, 'day')})",
                0,
            )
        )

    # Keys and signatures. The trust anchor's own self-signature proves nothing, so it is
    # exempt from the signature check.
    weak = False
    for i, (_cert, src) in enumerate(examined):
        info = infos[i]
        limit = 2048 if info.key_type in ("RSA", "DSA") else 256 if info.key_type == "EC" else 0
        if limit and 0 < info.key_bits < limit:
            weak = True
            findings.append(
                (
                    "cert.weak_key",
                    f"{_label(info)} has a {info.key_bits}-bit {info.key_type} key "
                    f"(minimum {limit})",
                    i,
                )
            )
        anchor = path is not None and i == len(examined) - 1 and src == "store"
        if not anchor and not info.self_issued and (info.signature_hash or "") in WEAK_HASHES:
            weak = True
            findings.append(
                (
                    "cert.weak_signature",
                    f"{_label(info)} is signed with {info.signature_hash.upper()}"
                    if info.signature_hash
                    else f"{_label(info)} has a weak signature",
                    i,
                )
            )

    # Trust.
    trusted = False
    error: str | None = None
    leaf_in_store = _der(leaf) in pool.root_ders
    if path is None:
        if leaf_info.self_issued and issued_by(leaf, leaf):
            error = "self-signed certificate not in the trust store"
            findings.append(
                (
                    "cert.self_signed",
                    f"{leaf_role} ({_label(leaf_info)}) is self-signed and "
                    f"not in the trust store ({roots.description})",
                    0,
                )
            )
        else:
            top = pool.dead_end(leaf)
            top_info = cert_info(top)
            error = f"no path to a trusted root: issuer {top_info.issuer} not found"
            if pool.exhausted:
                notes.append(
                    f"path building stopped after {pool.signature_checks} signature checks"
                    if not pool.stopped
                    else f"path building stopped at its {deadline:g} s deadline"
                )
            if notes:
                error += "; " + "; ".join(notes)
            findings.append(
                (
                    "cert.untrusted",
                    f"no path from {_label(leaf_info)} to a root in the trust store "
                    f"({roots.description}); missing issuer: {top_info.issuer}",
                    len(examined) - 1 if top is not leaf else 0,
                )
            )
    elif leaf_in_store:
        trusted = True  # a certificate pinned in --ca-file is its own anchor
    else:
        intermediates = [c for c, s in path[1:] if s != "store"]
        store = list(roots.certs)
        late: tuple[list[x509.Certificate] | None, str | None] = (
            None,
            f"validation stopped at its {deadline:g} s deadline",
        )
        chain, error = await _off_loop(
            pool, lambda: _verifier_path(leaf, intermediates, store, moment), late, deadline
        )
        trusted = chain is not None
        if chain is None and not weak:
            # Retry inside the validity window: if the path holds there, dates were the
            # only problem and they are already reported.
            when = _window([c for c, _ in path])
            if when is not None:
                later, _ = await _off_loop(
                    pool, lambda: _verifier_path(leaf, intermediates, store, when), late, deadline
                )
                if later is None:
                    findings.append(
                        (
                            "cert.untrusted",
                            f"the chain of {_label(leaf_info)} does not validate: {error}",
                            0,
                        )
                    )
            elif not date_problem:
                findings.append(
                    (
                        "cert.untrusted",
                        f"the chain of {_label(leaf_info)} does not validate: {error}",
                        0,
                    )
                )
        if incomplete:
            from_aia = ", ".join(_label(infos[i]) for i, (_, s) in enumerate(path) if s == "aia")
            findings.append(
                (
                    "cert.incomplete_chain",
                    f"{supplier} did not send the intermediate certificate(s) "
                    f"{from_aia}; the chain validates only after fetching them via AIA",
                    next(i for i, (_, s) in enumerate(path) if s == "aia"),
                )
            )
            trusted = False  # a sender that does not fetch AIA (every MTA) fails here

    # Names, by our own RFC 9525 matcher.
    name_ok: bool | None = None
    if names:
        name_ok = any(cert_matches(leaf_info.san, leaf_info.common_name, n) for n in names)
        if not name_ok:
            shown = ", ".join(leaf_info.san[:6]) or f"CN {leaf_info.common_name}"
            if len(leaf_info.san) > 6:
                shown += f" and {len(leaf_info.san) - 6} more"
            findings.append(
                (
                    "cert.name_mismatch",
                    f"{', '.join(names)} is not in the certificate (it names {shown})",
                    0,
                )
            )
    if options.expect_name:
        if not expected_name_matches(leaf_info.san, leaf_info.common_name, options.expect_name):
            findings.append(
                (
                    "cert.expected_name_mismatch",
                    f"the expected name {options.expect_name} is not in the certificate "
                    f"({', '.join(leaf_info.san[:6]) or leaf_info.common_name})",
                    0,
                )
            )
    if not has_san_extension(leaf):
        findings.append(
            (
                "cert.no_san",
                f"{leaf_role} has no subjectAltName, only CN {leaf_info.common_name}",
                0,
            )
        )
    if (
        server_eku
        and leaf_info.eku
        and not {"serverAuth", "anyExtendedKeyUsage"} & set(leaf_info.eku)
    ):
        findings.append(
            (
                "cert.not_server_auth",
                f"{leaf_role}'s extended key usage is "
                f"{', '.join(leaf_info.eku)}, without serverAuth",
                0,
            )
        )

    names_checked = list(names)
    if options.expect_name:
        names_checked.append(options.expect_name)
    yield ChainValidated(
        where=where,
        trusted=trusted and not date_problem and unreadable is None,
        path=links,
        error=error,
        trust_store=roots.description,
        names_checked=tuple(names_checked),
        name_matches=name_ok,
    )
    for fid, summary, index in findings:
        yield FindingRaised(raise_finding(fid, where, summary, evidence=(f"cert:{index}",)))
