"""RFC 9525 name matching (pure functions)."""

from __future__ import annotations

import pytest

from probes.model.names import cert_matches, expected_name_matches, match_name


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("mx.example.org", "mx.example.org", True),
        ("MX.Example.ORG", "mx.example.org", True),
        ("mx.example.org.", "mx.example.org", True),
        ("mx.example.org", "MX.EXAMPLE.ORG.", True),
        ("mx.example.org", "mx2.example.org", False),
        ("mx.example.org", "example.org", False),
        ("example.org", "mx.example.org", False),
        # wildcard: the whole left-most label, exactly one label
        ("*.example.org", "mx.example.org", True),
        ("*.EXAMPLE.org", "Mx.example.ORG", True),
        ("*.example.org", "a.b.example.org", False),
        ("*.example.org", "example.org", False),
        ("*.example.org", ".example.org", False),
        ("*.mx.microsoft", "contoso-com.j-v1.mx.microsoft", False),
        ("*.j-v1.mx.microsoft", "contoso-com.j-v1.mx.microsoft", True),
        # partial and misplaced wildcards are not honoured
        ("m*.example.org", "mx.example.org", False),
        ("*x.example.org", "mx.example.org", False),
        ("mx.*.org", "mx.example.org", False),
        ("*.*.org", "a.example.org", False),
        ("*", "localhost", False),
        # never a wildcard over a single-label suffix
        ("*.com", "example.com", False),
        ("*.org.", "example.org", False),
        # IDNA: U-label and A-label forms are the same name
        ("xn--bcher-kva.example", "bücher.example", True),
        ("bücher.example", "xn--bcher-kva.example", True),
        ("*.xn--bcher-kva.example", "mx.bücher.example", True),
        ("bücher.example", "bucher.example", False),
        # IP addresses never match a dNSName or a wildcard
        ("*.0.2.1", "192.0.2.1", False),
        ("192.0.2.1", "192.0.2.1", False),
        ("", "mx.example.org", False),
        ("mx.example.org", "", False),
    ],
)
def test_match_name(pattern: str, host: str, expected: bool) -> None:
    assert match_name(pattern, host) is expected


def test_cert_matches_uses_san_and_ignores_cn_when_san_exists() -> None:
    san = ("mx.example.org", "*.mail.example.org")
    assert cert_matches(san, "other.example.org", "mx.example.org")
    assert cert_matches(san, None, "in.mail.example.org")
    assert not cert_matches(san, "other.example.org", "other.example.org")


def test_cert_matches_falls_back_to_cn_only_without_any_san() -> None:
    assert cert_matches((), "mx.example.org", "mx.example.org")
    assert cert_matches((), "*.example.org", "mx.example.org")
    assert not cert_matches((), None, "mx.example.org")
    # an IP-only SAN is still a SAN: the CN is not consulted
    assert not cert_matches(("IP:192.0.2.1",), "mx.example.org", "mx.example.org")


def test_cert_matches_ip_addresses_against_ip_entries() -> None:
    san = ("mx.example.org", "IP:192.0.2.1", "IP:2001:db8::1")
    assert cert_matches(san, None, "192.0.2.1")
    assert cert_matches(san, None, "2001:db8:0::1")
    assert cert_matches(san, None, "[2001:db8::1]")
    assert not cert_matches(san, None, "192.0.2.2")
    assert not cert_matches(("192.0.2.1",), "192.0.2.1", "192.0.2.1")  # dNSName, not IP


@pytest.mark.parametrize(
    ("san", "expected", "ok"),
    [
        (("*.example.org",), "*.example.org", True),
        (("*.EXAMPLE.org",), "*.example.org.", True),
        (("mx.example.org",), "*.example.org", True),
        (("a.b.example.org",), "*.example.org", False),
        (("*.other.org",), "*.example.org", False),
        (("*.example.org",), "mx.example.org", True),
        (("mx.example.org",), "mail.example.org", False),
        (("*.sub.example.org",), "*.example.org", False),
    ],
)
def test_expected_name(san: tuple[str, ...], expected: str, ok: bool) -> None:
    assert expected_name_matches(san, None, expected) is ok
