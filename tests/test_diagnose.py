"""Unit tests of the pure parts of probes.diagnose (the mail route from an MX answer)."""

from __future__ import annotations

import dns.rdata
import dns.rdataclass
import dns.rdatatype

from probes.diagnose import _Run
from probes.net.dns import Answer


def _mx_answer(*records: str) -> Answer:
    rdata = tuple(
        dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.MX, text) for text in records
    )
    return Answer("example.org", "MX", "NOERROR", records, False, None, rdata)


def test_mx_in_preference_order_lower_case_without_trailing_dot() -> None:
    hosts = _Run.parse_mx(_mx_answer("20 MX2.Example.ORG.", "10 mx1.example.org."))
    assert hosts is not None
    assert [(h.host, h.preference) for h in hosts] == [
        ("mx1.example.org", 10),
        ("mx2.example.org", 20),
    ]


def test_same_mx_host_twice_is_probed_once_at_its_best_preference() -> None:
    # RFC 5321 5.1: the MX list is a set of hosts ordered by preference; a sender tries a
    # host once. Listing it twice (or with two spellings) must not probe it twice, which
    # would double its findings and mix two dialogues into one transcript.
    hosts = _Run.parse_mx(
        _mx_answer("20 mx1.example.org.", "10 MX1.example.org.", "30 mx2.example.org.")
    )
    assert hosts is not None
    assert [(h.host, h.preference) for h in hosts] == [
        ("mx1.example.org", 10),
        ("mx2.example.org", 30),
    ]


def test_null_mx_alone_is_null_and_among_others_is_ignored() -> None:
    assert _Run.parse_mx(_mx_answer("0 .")) is None
    hosts = _Run.parse_mx(_mx_answer("0 .", "10 mx1.example.org."))
    assert hosts is not None
    assert [h.host for h in hosts] == ["mx1.example.org"]
