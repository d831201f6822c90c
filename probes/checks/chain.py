"""Chain building and validation: issuer search (sent, caIssuers, store), signatures, dates, trust."""

from __future__ import annotations

import re
import warnings
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING

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


class _Pool:
    """Candidate certificates, each with where it came from."""

    def __init__(self, roots: list[x509.Certificate]) -> None:
        self.roots = roots
        self.root_ders = {_der(c) for c in roots}
        self.extra: list[tuple[x509.Certificate, CertSource]] = []
        self._ders: set[bytes] = set()

    def add(self, cert: x509.Certificate, source: CertSource) -> None:
        der = _der(cert)
        if der in self._ders:
            return
        self._ders.add(der)
        self.extra.append((cert, source))

    def issuers_of(self, cert: x509.Certificate) -> list[tuple[x509.Certificate, CertSource]]:
        # Store roots first so a path ends at a trust anchor as early as it can (a sent
        # cross-signed copy of a root would otherwise lead to an older, distrusted root).
        found: list[tuple[x509.Certificate, CertSource]] = []
        name = cert.issuer.public_bytes()
        for root in self.roots:
            if root.subject.public_bytes() == name and issued_by(cert, root):
                found.append((root, "store"))
        for cand, source in self.extra:
            if cand.subject.public_bytes() == name and issued_by(cert, cand):
                found.append((cand, source))
        return found

    def build(self, leaf: x509.Certificate) -> list[tuple[x509.Certificate, CertSource]] | None:
        """A path leaf -> store root by names and signatures only, or None."""
        if _der(leaf) in self.root_ders:
            return [(leaf, "store")]

        def walk(
            path: list[tuple[x509.Certificate, CertSource]],
        ) -> list[tuple[x509.Certificate, CertSource]] | None:
            if len(path) > MAX_DEPTH:
                return None
            current = path[-1][0]
            used = {_der(c) for c, _ in path}
            for cand, source in self.issuers_of(current):
                cder = _der(cand)
                if cder in used:
                    continue
                if cder in self.root_ders:
                    return [*path, (cand, "store")]
                found = walk([*path, (cand, source)])
                if found is not None:
                    return found
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
        return
    leaf = loaded[0]
    leaf_info = sent[0]
    pool = _Pool(list(roots.certs))
    for cert in loaded[1:]:
        pool.add(cert, "sent")

    findings: list[tuple[str, str, int]] = []  # (id, summary, index in the path)
    notes: list[str] = []

    path = pool.build(leaf)
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
            path = pool.build(leaf)
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
                f"{leaf_info.not_after} (in {days} days)",
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
        chain, error = _verifier_path(leaf, intermediates, list(roots.certs), moment)
        trusted = chain is not None
        if chain is None and not weak:
            # Retry inside the validity window: if the path holds there, dates were the
            # only problem and they are already reported.
            when = _window([c for c, _ in path])
            if when is not None:
                later, _ = _verifier_path(leaf, intermediates, list(roots.certs), when)
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
        trusted=trusted and not date_problem,
        path=links,
        error=error,
        trust_store=roots.description,
        names_checked=tuple(names_checked),
        name_matches=name_ok,
    )
    for fid, summary, index in findings:
        yield FindingRaised(raise_finding(fid, where, summary, evidence=(f"cert:{index}",)))
