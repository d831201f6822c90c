"""DANE: TLSA parsing, matching against generated chains, judge_dane outcomes, and lookup_tlsa
against a real DNS responder on 127.0.0.1."""

from __future__ import annotations

import hashlib
from typing import Any

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mxlens_lab.pki import new_key
from probes.checks.dane import (
    TlsaLookup,
    is_usable,
    judge_dane,
    lookup_tlsa,
    parse_tlsa,
    spki_der,
    tlsa_matches,
)
from probes.model.events import DaneChecked, FindingRaised, TlsaRecord, Where
from probes.net.dns import Resolver
from tests.support.dns import DnsResponder
from tests.support.pki import issue, rsa_key

MX = "mx.example.test"
WHERE = Where(MX, "127.0.0.1", 25)

ROOT_I = issue("Test Root", ca=True)
INT_I = issue("Test Intermediate", ROOT_I, ca=True, key=rsa_key(2048))
LEAF_KEY = new_key("ec384")
LEAF = issue(MX, INT_I, key=LEAF_KEY).cert
WRONG_LEAF = issue("other", INT_I, key=LEAF_KEY, san=("other.example",)).cert
WILD_LEAF = issue("wild", INT_I, key=LEAF_KEY, san=("*.example.test",)).cert
ROOT, INTERMEDIATE = ROOT_I.cert, INT_I.cert
# A CA that is sent along but did not sign anything in the chain.
STRAY = issue("Stray CA", ca=True).cert


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


CHAIN = [der(LEAF), der(INTERMEDIATE), der(ROOT)]


def association(cert: x509.Certificate, selector: int, mtype: int) -> str:
    """Computed independently of probes.checks.dane: SPKI through the key's own re-encoding."""
    content = (
        der(cert)
        if selector == 0
        else cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )
    if mtype == 1:
        content = hashlib.sha256(content).digest()
    elif mtype == 2:
        content = hashlib.sha512(content).digest()
    return content.hex()


def rec(usage: int, selector: int, mtype: int, cert: x509.Certificate) -> TlsaRecord:
    return TlsaRecord(usage, selector, mtype, association(cert, selector, mtype))


# --------------------------------------------------------------------------- parsing


def test_parse_text() -> None:
    r = parse_tlsa("3 1 1 ABCDEF0123")
    assert r == TlsaRecord(3, 1, 1, "abcdef0123")


def test_parse_text_split_hex_and_parentheses() -> None:
    r = parse_tlsa("2 0 1 ( abcd\n ef01 )")
    assert r == TlsaRecord(2, 0, 1, "abcdef01")


def test_parse_dnspython_rdata() -> None:
    data = association(LEAF, 1, 1)
    rd = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TLSA, f"3 1 1 {data}")
    assert parse_tlsa(rd) == TlsaRecord(3, 1, 1, data)


@pytest.mark.parametrize("text", ["3 1 1", "x 1 1 ab", "3 1 1 zz", "300 1 1 ab", ""])
def test_parse_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        parse_tlsa(text)


def test_parse_rejects_other_objects() -> None:
    with pytest.raises(ValueError):
        parse_tlsa(object())


# --------------------------------------------------------------------------- matching


@pytest.mark.parametrize("selector", [0, 1])
@pytest.mark.parametrize("mtype", [0, 1, 2])
def test_dane_ee_matches_leaf_only(selector: int, mtype: int) -> None:
    assert tlsa_matches(rec(3, selector, mtype, LEAF), CHAIN)
    # The same association data for the intermediate is not a DANE-EE match.
    assert not tlsa_matches(rec(3, selector, mtype, INTERMEDIATE), CHAIN)


@pytest.mark.parametrize("selector", [0, 1])
@pytest.mark.parametrize("mtype", [0, 1, 2])
def test_dane_ta_matches_non_leaf(selector: int, mtype: int) -> None:
    assert tlsa_matches(rec(2, selector, mtype, INTERMEDIATE), CHAIN)
    assert tlsa_matches(rec(2, selector, mtype, ROOT), CHAIN)
    assert not tlsa_matches(rec(2, selector, mtype, LEAF), CHAIN)


def test_dane_ta_needs_the_ta_in_the_sent_chain() -> None:
    assert not tlsa_matches(rec(2, 1, 1, ROOT), CHAIN[:2])


@pytest.mark.parametrize("usage", [0, 1])
def test_pkix_usages_are_unusable(usage: int) -> None:
    r = rec(usage, 1, 1, LEAF)
    assert not is_usable(r)
    assert not tlsa_matches(r, CHAIN)


def test_unknown_selector_matching_and_bad_length_are_unusable() -> None:
    good = rec(3, 1, 1, LEAF)
    assert is_usable(good)
    assert not is_usable(TlsaRecord(3, 2, 1, good.data))
    assert not is_usable(TlsaRecord(3, 1, 3, good.data))
    assert not is_usable(TlsaRecord(3, 1, 1, good.data[:-2]))  # 31-byte SHA-256
    assert not is_usable(TlsaRecord(3, 1, 2, good.data))  # SHA-256 length for SHA-512
    assert not is_usable(TlsaRecord(4, 1, 1, good.data))
    assert not tlsa_matches(TlsaRecord(3, 2, 1, good.data), CHAIN)


def test_mismatch_and_empty_chain() -> None:
    assert not tlsa_matches(TlsaRecord(3, 1, 1, "00" * 32), CHAIN)
    assert not tlsa_matches(rec(3, 1, 1, LEAF), [])


@pytest.mark.parametrize("cert", [LEAF, INTERMEDIATE, ROOT])
def test_spki_is_read_exactly_from_the_certificate(cert: x509.Certificate) -> None:
    expected = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert spki_der(der(cert)) == expected


# --------------------------------------------------------------------------- judge_dane


def lookup(
    records: list[TlsaRecord], *, status: str = "NOERROR", authenticated: bool = True
) -> TlsaLookup:
    return TlsaLookup(f"_25._tcp.{MX}", status, authenticated, tuple(records))


def outcome(events: list[Any]) -> tuple[DaneChecked, list[str]]:
    assert isinstance(events[0], DaneChecked)
    assert events[0].where == WHERE
    ids = [e.finding.id for e in events[1:] if isinstance(e, FindingRaised)]
    assert len(ids) == len(events) - 1
    return events[0], ids


@pytest.mark.parametrize("status", ["SERVFAIL", "TIMEOUT", "REFUSED", "ERROR: boom"])
def test_judge_lookup_failed(status: str) -> None:
    ev, ids = outcome(judge_dane(WHERE, lookup([], status=status, authenticated=False), CHAIN))
    assert ids == ["dane.lookup_failed"]
    assert ev.status == status


@pytest.mark.parametrize("status", ["NODATA", "NXDOMAIN"])
def test_judge_authenticated_denial_means_dane_not_used(status: str) -> None:
    ev, ids = outcome(judge_dane(WHERE, lookup([], status=status), CHAIN))
    assert ids == []
    assert ev.matched is None and ev.authenticated


@pytest.mark.parametrize("status", ["NODATA", "NXDOMAIN"])
def test_judge_unsigned_zone(status: str) -> None:
    _, ids = outcome(judge_dane(WHERE, lookup([], status=status, authenticated=False), CHAIN))
    assert ids == ["dane.dnssec_unsigned"]


def test_judge_insecure_records() -> None:
    ev, ids = outcome(judge_dane(WHERE, lookup([rec(3, 1, 1, LEAF)], authenticated=False), CHAIN))
    assert ids == ["dane.insecure"]
    assert ev.matched is None  # not used, even though it would match


def test_judge_unusable() -> None:
    records = [rec(1, 1, 1, LEAF), rec(0, 0, 1, ROOT), TlsaRecord(3, 7, 1, "ab" * 32)]
    ev, ids = outcome(judge_dane(WHERE, lookup(records), CHAIN))
    assert ids == ["dane.unusable"]
    assert ev.usable == 0 and len(ev.records) == 3


def test_judge_without_chain_reports_records_only() -> None:
    ev, ids = outcome(judge_dane(WHERE, lookup([rec(3, 1, 1, LEAF), rec(1, 1, 1, LEAF)]), None))
    assert ids == []
    assert ev.usable == 1 and ev.matched is None


def test_judge_dane_ee_match() -> None:
    good = rec(3, 1, 1, LEAF)
    ev, ids = outcome(judge_dane(WHERE, lookup([TlsaRecord(3, 1, 1, "11" * 32), good]), CHAIN))
    assert ids == []
    assert ev.matched == good
    assert ev.usable == 2
    assert ev.ta_name_ok is None


def test_judge_dane_ee_ignores_names() -> None:
    chain = [der(WRONG_LEAF), der(INTERMEDIATE)]
    ev, ids = outcome(judge_dane(WHERE, lookup([rec(3, 0, 2, WRONG_LEAF)]), chain))
    assert ids == [] and ev.matched is not None


def test_judge_mismatch() -> None:
    stale = rec(3, 1, 1, STRAY)  # the digest of another key, e.g. before a key rollover
    ev, ids = outcome(judge_dane(WHERE, lookup([stale, rec(2, 1, 1, STRAY)]), CHAIN))
    assert ids == ["dane.tlsa_mismatch"]
    assert ev.matched is None and ev.usable == 2


def test_judge_dane_ta_match_with_name() -> None:
    ta = rec(2, 0, 1, INTERMEDIATE)
    ev, ids = outcome(judge_dane(WHERE, lookup([ta]), CHAIN))
    assert ids == []
    assert ev.matched == ta and ev.ta_name_ok is True


def test_judge_dane_ta_wildcard_name() -> None:
    chain = [der(WILD_LEAF), der(INTERMEDIATE), der(ROOT)]
    ev, ids = outcome(judge_dane(WHERE, lookup([rec(2, 1, 1, ROOT)]), chain))
    assert ids == [] and ev.ta_name_ok is True


def test_judge_dane_ta_wrong_name() -> None:
    chain = [der(WRONG_LEAF), der(INTERMEDIATE), der(ROOT)]
    ev, ids = outcome(judge_dane(WHERE, lookup([rec(2, 1, 1, ROOT)]), chain))
    assert ids == ["dane.tlsa_mismatch"]
    assert ev.matched is None and ev.ta_name_ok is False
    summary = next(
        e.finding.summary
        for e in judge_dane(WHERE, lookup([rec(2, 1, 1, ROOT)]), chain)
        if isinstance(e, FindingRaised)
    )
    assert MX in summary and "other.example" in summary


def test_judge_dane_ta_that_signed_nothing_does_not_count() -> None:
    chain = [der(LEAF), der(INTERMEDIATE), der(STRAY)]
    ev, ids = outcome(judge_dane(WHERE, lookup([rec(2, 1, 1, STRAY)]), chain))
    assert ids == ["dane.tlsa_mismatch"]
    assert ev.matched is None


def test_judge_prefers_dane_ee_when_ta_name_fails() -> None:
    chain = [der(WRONG_LEAF), der(INTERMEDIATE)]
    ee = rec(3, 1, 1, WRONG_LEAF)
    ev, ids = outcome(judge_dane(WHERE, lookup([rec(2, 1, 1, INTERMEDIATE), ee]), chain))
    assert ids == [] and ev.matched == ee


# --------------------------------------------------------------------------- lookup_tlsa


async def test_lookup_authenticated_records(dns_server: DnsResponder) -> None:
    data = association(LEAF, 1, 1)
    dns_server.zone[(f"_25._tcp.{MX}", "TLSA")] = [f"3 1 1 {data}", f"2 0 1 {'ab' * 32}"]
    dns_server.authenticated.add(f"_25._tcp.{MX}")
    resolver = Resolver(("127.0.0.1", dns_server.port), timeout=2)
    result = await lookup_tlsa(MX, 25, resolver)
    assert result.name == f"_25._tcp.{MX}"
    assert result.status == "NOERROR" and result.authenticated
    assert TlsaRecord(3, 1, 1, data) in result.records and len(result.records) == 2
    ev, ids = outcome(judge_dane(WHERE, result, CHAIN))
    assert ids == [] and ev.matched == TlsaRecord(3, 1, 1, data)


async def test_lookup_port_and_unsigned_nodata(dns_server: DnsResponder) -> None:
    dns_server.zone[(f"_587._tcp.{MX}", "A")] = ["127.0.0.1"]  # the name exists: NODATA
    resolver = Resolver(("127.0.0.1", dns_server.port), timeout=2)
    result = await lookup_tlsa(MX, 587, resolver)
    assert result.name == f"_587._tcp.{MX}"
    assert result.status == "NODATA" and not result.authenticated
    _, ids = outcome(judge_dane(WHERE, result, CHAIN))
    assert ids == ["dane.dnssec_unsigned"]


async def test_lookup_servfail(dns_server: DnsResponder) -> None:
    dns_server.zone[(f"_25._tcp.{MX}", "TLSA")] = "SERVFAIL"
    resolver = Resolver(("127.0.0.1", dns_server.port), timeout=2)
    result = await lookup_tlsa(MX, 25, resolver)
    assert result.status == "SERVFAIL"
    _, ids = outcome(judge_dane(WHERE, result, CHAIN))
    assert ids == ["dane.lookup_failed"]


async def test_lookup_timeout(dns_server: DnsResponder) -> None:
    dns_server.drop.add(f"_25._tcp.{MX}")
    resolver = Resolver(("127.0.0.1", dns_server.port), timeout=0.3)
    result = await lookup_tlsa(MX, 25, resolver)
    assert result.status == "TIMEOUT"
    _, ids = outcome(judge_dane(WHERE, result, CHAIN))
    assert ids == ["dane.lookup_failed"]


def _cname(target: str) -> Any:
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.CNAME, target + ".")


async def test_lookup_follows_a_secure_cname_first(dns_server: DnsResponder) -> None:
    # RFC 7672 2.2.2 / RFC 7671 7: when the MX host is a DNSSEC-secure alias, a DANE
    # sender looks for TLSA at the fully expanded name first, and only if there are none
    # there at the name from the MX record.
    final = "real.example.test"
    data = association(LEAF, 1, 1)
    dns_server.zone[(MX, "A")] = [_cname(final)]
    dns_server.authenticated.update({MX, f"_25._tcp.{final}", f"_25._tcp.{MX}"})
    dns_server.zone[(f"_25._tcp.{final}", "TLSA")] = [f"3 1 1 {data}"]
    dns_server.zone[(f"_25._tcp.{MX}", "TLSA")] = [f"3 1 1 {'ab' * 32}"]
    resolver = Resolver(("127.0.0.1", dns_server.port), timeout=2)
    result = await lookup_tlsa(MX, 25, resolver)
    assert result.name == f"_25._tcp.{final}"
    ev, ids = outcome(judge_dane(WHERE, result, CHAIN))
    assert ids == [] and ev.matched == TlsaRecord(3, 1, 1, data)


async def test_lookup_cname_without_tlsa_falls_back_to_mx_name(dns_server: DnsResponder) -> None:
    final = "real.example.test"
    data = association(LEAF, 1, 1)
    dns_server.zone[(MX, "A")] = [_cname(final)]
    dns_server.zone[(final, "A")] = ["127.0.0.1"]  # the final name exists: TLSA is NODATA
    dns_server.authenticated.update({MX, f"_25._tcp.{final}", f"_25._tcp.{MX}"})
    dns_server.zone[(f"_25._tcp.{MX}", "TLSA")] = [f"3 1 1 {data}"]
    resolver = Resolver(("127.0.0.1", dns_server.port), timeout=2)
    result = await lookup_tlsa(MX, 25, resolver)
    assert result.name == f"_25._tcp.{MX}" and result.records == (TlsaRecord(3, 1, 1, data),)


async def test_lookup_insecure_cname_uses_the_mx_name_only(dns_server: DnsResponder) -> None:
    final = "real.example.test"
    dns_server.zone[(MX, "A")] = [_cname(final)]  # no AD bit on the alias
    dns_server.authenticated.update({f"_25._tcp.{final}", f"_25._tcp.{MX}"})
    dns_server.zone[(f"_25._tcp.{final}", "TLSA")] = [f"3 1 1 {'cd' * 32}"]
    dns_server.zone[(f"_25._tcp.{MX}", "TLSA")] = [f"3 1 1 {'ab' * 32}"]
    resolver = Resolver(("127.0.0.1", dns_server.port), timeout=2)
    result = await lookup_tlsa(MX, 25, resolver)
    assert result.name == f"_25._tcp.{MX}"


def test_judge_dane_ta_accepts_the_cname_expanded_name() -> None:
    # RFC 7672 3.2.2: with TLSA records found at the expanded name of an aliased MX host,
    # the certificate may carry that final name instead of the MX name.
    chain = [der(WRONG_LEAF), der(INTERMEDIATE)]
    at_final = TlsaLookup("_25._tcp.other.example", "NOERROR", True, (rec(2, 1, 1, INTERMEDIATE),))
    ev, ids = outcome(judge_dane(WHERE, at_final, chain))
    assert ids == [] and ev.ta_name_ok is True
    # At the MX name itself, the same chain still fails the name check.
    _, ids = outcome(judge_dane(WHERE, lookup([rec(2, 1, 1, INTERMEDIATE)]), chain))
    assert ids == ["dane.tlsa_mismatch"]
