"""Certificate name matching by RFC 9525 (the successor of RFC 6125).

Rules implemented, with why:
- Only subjectAltName dNSName entries count; the subject CN is looked at only when the
  certificate has no SAN at all (legacy; RFC 9525 drops CN, but senders still differ, and
  `cert.no_san` reports it separately).
- Comparison is case-insensitive, trailing dots are ignored, and Unicode names are compared in
  their IDNA A-label form, so "bücher.example" matches "xn--bcher-kva.example".
- A wildcard is only the complete left-most label ("*.example.org"), matches exactly one label
  ("a.example.org", not "a.b.example.org", not "example.org"), and is refused when what follows
  it is a single label ("*.com"): no CA may issue those and no client accepts them.
- IP addresses match only "IP:" entries (iPAddress SANs), never a dNSName or a wildcard.
"""

from __future__ import annotations

import ipaddress

import idna


def normalize(name: str) -> str | None:
    """A-label, lower-case, no trailing dot. None when the name is not a usable DNS name."""
    text = name.strip().rstrip(".").lower()
    if not text or any(ch.isspace() for ch in text):
        return None
    if text.isascii():
        return text
    try:
        return idna.encode(text, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def is_ip_literal(text: str) -> bool:
    """An IPv4 or IPv6 address (brackets allowed), as opposed to a host name."""
    return _ip(text) is not None


def match_name(pattern: str, host: str) -> bool:
    """Does a presented dNSName `pattern` (perhaps a wildcard) cover the host name `host`?"""
    if _ip(host) is not None:
        return False  # IP reference identities only match iPAddress SANs (cert_matches)
    want = normalize(host)
    if want is None or "*" in want:
        return False
    if pattern.strip().startswith("*."):
        rest = normalize(pattern.strip()[2:])
        if rest is None or "*" in rest or "." not in rest:
            return False
        first, _, parent = want.partition(".")
        return bool(first) and parent == rest
    got = normalize(pattern)
    if got is None or "*" in got:
        return False  # partial wildcards ("f*.example.org") are not honoured
    return got == want


def _dns_names(san: tuple[str, ...]) -> list[str]:
    return [s for s in san if not s.startswith("IP:")]


def cert_matches(san: tuple[str, ...], cn: str | None, host: str) -> bool:
    """Does a certificate with these SAN entries (dNSName, and "IP:..." entries) and this CN
    cover `host` (a host name or an IP address)?"""
    address = _ip(host)
    if address is not None:
        return any(s.startswith("IP:") and _ip(s[3:]) == address for s in san)
    if san:
        return any(match_name(p, host) for p in _dns_names(san))
    return cn is not None and match_name(cn, host)


def expected_name_matches(san: tuple[str, ...], cn: str | None, expected: str) -> bool:
    """Is the name a connector requires (`--expect-name`, Exchange TlsDomain /
    TlsCertificateName) in the certificate?

    A plain name is matched like a host name (so a wildcard certificate covers it). A wildcard
    expectation "*.example.org" is met by a certificate that carries "*.example.org" itself,
    or a name it covers ("mx1.example.org"): the connector wants a certificate of that domain,
    and both kinds are that. Kept deliberately simple; no other wildcard forms are accepted.
    """
    text = expected.strip()
    if not text.startswith("*."):
        return cert_matches(san, cn, text)
    want = normalize(text[2:])
    if want is None:
        return False
    names = _dns_names(san) if san else ([cn] if cn else [])
    for name in names:
        if name.strip().startswith("*."):
            if normalize(name.strip()[2:]) == want:
                return True
        elif match_name(text, name):
            return True
    return False


def mx_matches(pattern: str, mx_host: str) -> bool:
    """RFC 8461 4.1: case-insensitive; `*.example.com` matches exactly one more label on the
    left (`a.example.com`), not `a.b.example.com` and not `example.com`."""
    pat = pattern.strip().lower().rstrip(".")
    host = mx_host.strip().lower().rstrip(".")
    if not pat or not host:
        return False
    if pat.startswith("*."):
        suffix = pat[1:]  # ".example.com"
        if not host.endswith(suffix):
            return False
        first = host[: -len(suffix)]
        return bool(first) and "." not in first and "*" not in first
    return pat == host
