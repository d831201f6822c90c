"""Chain validation (probes/checks/chain.py) against a private PKI (no internet)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID

from probes.checks.chain import validate_chain
from probes.model.events import ChainValidated, Evidence, FindingRaised, Where
from probes.model.options import Options
from probes.net.dns import Resolver
from probes.net.http import Fetcher
from probes.net.trust import Roots, load_roots
from tests.support.http import Route, closed_port, http_server
from tests.support.pki import DAY, NOW, Issued, issue, rsa_key

WHERE = Where("mx.example.test", "127.0.0.1", 25)
OPTS = Options(timeout=3, private_endpoints=True)  # the test servers are on loopback


def roots_of(*certs: Issued) -> Roots:
    return Roots([c.cert for c in certs], "test roots")


def fetcher() -> Fetcher:
    # Nothing answers DNS here; tests use 127.0.0.1 URLs.
    return Fetcher(Resolver(("127.0.0.1", closed_port()), timeout=1), OPTS, load_roots(OPTS))


async def run(
    chain: list[Issued], roots: Roots, names: list[str] | None = None, options: Options = OPTS
) -> tuple[ChainValidated, list[str], list[FindingRaised]]:
    f = fetcher()
    try:
        events = [
            e
            async for e in validate_chain(
                WHERE,
                [c.info for c in chain],
                options,
                names=names if names is not None else ["mx.example.test"],
                fetcher=f,
                roots=roots,
            )
        ]
    finally:
        await f.aclose()
    validated = [e for e in events if isinstance(e, ChainValidated)]
    assert len(validated) == 1
    findings = [e for e in events if isinstance(e, FindingRaised)]
    return validated[0], sorted(f.finding.id for f in findings), findings


# --------------------------------------------------------------------------- validation


async def test_trusted_chain_has_no_findings(pki: dict[str, Issued]) -> None:
    v, ids, _ = await run([pki["leaf"], pki["inter"]], roots_of(pki["root"]))
    assert ids == []
    assert v.trusted and v.error is None
    assert [link.source for link in v.path] == ["sent", "sent", "store"]
    assert v.path[-1].cert.subject == "CN=Test Root"
    assert v.trust_store == "test roots"
    assert v.names_checked == ("mx.example.test",) and v.name_matches is True


async def test_self_signed_leaf_is_only_self_signed(pki: dict[str, Issued]) -> None:
    leaf = issue("mx.example.test")
    v, ids, findings = await run([leaf], roots_of(pki["root"]))
    assert ids == ["cert.self_signed"]
    assert not v.trusted
    assert findings[0].finding.evidence == (Evidence("cert", 0),)


async def test_self_signed_leaf_pinned_in_ca_file_is_trusted() -> None:
    leaf = issue("mx.example.test")
    v, ids, _ = await run([leaf], roots_of(leaf))
    assert ids == [] and v.trusted


async def test_unknown_root_is_untrusted(pki: dict[str, Issued]) -> None:
    other_root = issue("Other Root", ca=True)
    v, ids, findings = await run([pki["leaf"], pki["inter"]], roots_of(other_root))
    assert ids == ["cert.untrusted"]
    assert not v.trusted
    assert "Test Root" in findings[0].finding.summary  # names the missing issuer


@pytest.mark.parametrize("form", ["der", "pem", "pkcs7"])
async def test_incomplete_chain_fixed_by_aia(form: str) -> None:
    root = issue("AIA Root", ca=True)
    inter = issue("AIA Intermediate", root, ca=True)
    body = {
        "der": inter.der,
        "pem": inter.pem,
        "pkcs7": pkcs7.serialize_certificates([inter.cert], Encoding.DER),
    }[form]
    with http_server() as srv:
        srv.routes["/inter"] = Route(body=body)
        leaf = issue("mx.example.test", inter, ca_issuers=(srv.url("/inter"),))
        v, ids, findings = await run([leaf], roots_of(root))
    assert ids == ["cert.incomplete_chain"]
    assert [link.source for link in v.path] == ["sent", "aia", "store"]
    assert not v.trusted
    assert "AIA Intermediate" in findings[0].finding.summary
    assert findings[0].finding.evidence == (Evidence("cert", 1),)


async def test_missing_intermediate_with_dead_aia_is_untrusted() -> None:
    root = issue("Dead Root", ca=True)
    inter = issue("Dead Intermediate", root, ca=True)
    leaf = issue("mx.example.test", inter, ca_issuers=(f"http://127.0.0.1:{closed_port()}/x",))
    v, ids, _ = await run([leaf], roots_of(root))
    assert ids == ["cert.untrusted"]
    assert v.error is not None and "connect: refused" in v.error


async def test_expired_leaf_is_expired_not_untrusted(pki: dict[str, Issued]) -> None:
    leaf = issue(
        "mx.example.test", pki["inter"], not_before=NOW - 400 * DAY, not_after=NOW - 2 * DAY
    )
    v, ids, findings = await run([leaf, pki["inter"]], roots_of(pki["root"]))
    assert ids == ["cert.expired"]
    assert not v.trusted
    assert leaf.info.not_after in findings[0].finding.summary
    assert "server certificate" in findings[0].finding.summary


async def test_expired_intermediate_names_that_certificate() -> None:
    root = issue("Exp Root", ca=True)
    inter = issue(
        "Old Intermediate", root, ca=True, not_before=NOW - 400 * DAY, not_after=NOW - DAY
    )
    leaf = issue("mx.example.test", inter, not_before=NOW - 100 * DAY, not_after=NOW + 100 * DAY)
    _, ids, findings = await run([leaf, inter], roots_of(root))
    assert ids == ["cert.expired"]
    assert findings[0].finding.evidence == (Evidence("cert", 1),)
    assert "Old Intermediate" in findings[0].finding.summary


async def test_not_yet_valid(pki: dict[str, Issued]) -> None:
    leaf = issue("mx.example.test", pki["inter"], not_before=NOW + 3 * DAY)
    _, ids, findings = await run([leaf, pki["inter"]], roots_of(pki["root"]))
    assert ids == ["cert.not_yet_valid"]
    assert leaf.info.not_before in findings[0].finding.summary


async def test_expires_soon(pki: dict[str, Issued]) -> None:
    leaf = issue("mx.example.test", pki["inter"], not_after=NOW + 5 * DAY)
    v, ids, _ = await run([leaf, pki["inter"]], roots_of(pki["root"]))
    assert ids == ["cert.expires_soon"]
    assert v.trusted


async def test_name_mismatch_only(pki: dict[str, Issued]) -> None:
    leaf = issue("other.example.net", pki["inter"])
    v, ids, findings = await run([leaf, pki["inter"]], roots_of(pki["root"]))
    assert ids == ["cert.name_mismatch"]
    assert v.trusted and v.name_matches is False
    assert "other.example.net" in findings[0].finding.summary


async def test_wildcard_covers_one_label_only(pki: dict[str, Issued]) -> None:
    leaf = issue("wild", pki["inter"], san=("*.example.test",))
    _, ids, _ = await run([leaf, pki["inter"]], roots_of(pki["root"]), names=["mx.example.test"])
    assert ids == []
    _, ids, _ = await run([leaf, pki["inter"]], roots_of(pki["root"]), names=["a.mx.example.test"])
    assert ids == ["cert.name_mismatch"]
    _, ids, _ = await run([leaf, pki["inter"]], roots_of(pki["root"]), names=["example.test"])
    assert ids == ["cert.name_mismatch"]


async def test_expected_name(pki: dict[str, Issued]) -> None:
    chain = [pki["leaf"], pki["inter"]]
    roots = roots_of(pki["root"])
    _, ids, _ = await run(chain, roots, options=Options(timeout=3, expect_name="mx.example.test"))
    assert ids == []
    _, ids, _ = await run(chain, roots, options=Options(timeout=3, expect_name="*.example.test"))
    assert ids == []
    _, ids, findings = await run(
        chain, roots, options=Options(timeout=3, expect_name="mail.partner.example")
    )
    assert ids == ["cert.expected_name_mismatch"]
    assert "mail.partner.example" in findings[0].finding.summary
    # A wildcard expectation is met by a certificate of a name directly under it.
    plain = issue("mx.corp.example", pki["inter"])
    _, ids, _ = await run(
        [plain, pki["inter"]],
        roots,
        names=["mx.corp.example"],
        options=Options(timeout=3, expect_name="*.corp.example"),
    )
    assert ids == []


async def test_no_san_uses_cn_and_warns(pki: dict[str, Issued]) -> None:
    leaf = issue("mx.example.test", pki["inter"], san=())
    v, ids, _ = await run([leaf, pki["inter"]], roots_of(pki["root"]))
    assert ids == ["cert.no_san"]
    assert v.name_matches is True


async def test_weak_rsa_key_is_weak_not_untrusted(pki: dict[str, Issued]) -> None:
    leaf = issue("mx.example.test", pki["inter"], key=rsa_key(1024))
    _, ids, findings = await run([leaf, pki["inter"]], roots_of(pki["root"]))
    assert ids == ["cert.weak_key"]
    assert "1024" in findings[0].finding.summary


@pytest.fixture(scope="module")
def rsa_pki() -> dict[str, Issued]:
    root = issue("RSA Root", ca=True, key=rsa_key(2048))
    inter = issue("RSA Intermediate", root, ca=True, key=rsa_key(2048))
    return {"root": root, "inter": inter}


async def test_sha1_signature_is_weak_not_untrusted(rsa_pki: dict[str, Issued]) -> None:
    inter = rsa_pki["inter"]
    leaf = issue("mx.example.test", inter, hash_alg=hashes.SHA1())
    assert leaf.info.signature_hash == "sha1"
    v, ids, findings = await run([leaf, inter], roots_of(rsa_pki["root"]))
    assert ids == ["cert.weak_signature"]
    assert "SHA1" in findings[0].finding.summary
    assert [link.source for link in v.path] == ["sent", "sent", "store"]


async def test_sha1_self_signature_of_root_is_fine() -> None:
    key = rsa_key(2048)
    root = issue("SHA1 Root", ca=True, key=key, hash_alg=hashes.SHA1())
    inter = issue("Inter", root, ca=True)
    leaf = issue("mx.example.test", inter)
    _, ids, _ = await run([leaf, inter], roots_of(root))
    assert ids == []


async def test_client_auth_only_leaf_is_not_server_auth(pki: dict[str, Issued]) -> None:
    leaf = issue("mx.example.test", pki["inter"], eku=(ExtendedKeyUsageOID.CLIENT_AUTH,))
    v, ids, _ = await run([leaf, pki["inter"]], roots_of(pki["root"]))
    assert ids == ["cert.not_server_auth"]
    assert v.trusted


async def test_several_problems_are_reported_together(pki: dict[str, Issued]) -> None:
    leaf = issue(
        "wrong.example.net",
        pki["inter"],
        not_before=NOW - 400 * DAY,
        not_after=NOW - DAY,
        eku=(ExtendedKeyUsageOID.CLIENT_AUTH,),
    )
    _, ids, _ = await run([leaf, pki["inter"]], roots_of(pki["root"]))
    assert ids == ["cert.expired", "cert.name_mismatch", "cert.not_server_auth"]
