"""Host names: one canonical form, and the three wildcard rules side by side.

`match_name`/`cert_matches` (certificate names, RFC 9525), `mx_matches` (MTA-STS mx patterns,
RFC 8461 4.1) and `dane_name_matches` (DANE-TA reference identities, RFC 7672 3.2.3) differ in
small ways that matter, so they live together where the differences can be read.

Certificate name matching by RFC 9525 (the successor of RFC 6125).

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


def canonical(name: str) -> str:
    """The comparison form of a DNS name as received: trimmed, no trailing dot, lower-case.

    Unlike `normalize` it never refuses a name and keeps U-labels as they are; it is what a
    lookup key, a set of host names or an equality test wants."""
    return name.strip().rstrip(".").lower()


def normalize(name: str) -> str | None:
    """A-label, lower-case, no trailing dot. None when the name is not a usable DNS name."""
    text = canonical(name)
    if not text or any(ch.isspace() for ch in text):
        return None
    if text.isascii():
        return text
    try:
        return idna.encode(text, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


def split_host_port(text: str) -> tuple[str, int | None]:
    """`HOST`, `HOST:PORT`, `ADDR`, `ADDR:PORT`, `[IPv6]` or `[IPv6]:PORT` -> (host, port).

    A bare IPv6 address (more than one colon, no brackets) has no port. Raises ValueError with
    a reason fit for the user ("missing ]", "only :PORT may follow ]", "bad port ...")."""
    raw = text.strip()
    if raw.startswith("["):
        end = raw.find("]")
        if end < 0:
            raise ValueError("missing ]")
        host, rest = raw[1:end], raw[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError("only :PORT may follow ]")
        return host, (_port_number(rest[1:]) if rest else None)
    if raw.count(":") == 1:
        host, _, port_text = raw.partition(":")
        return host, _port_number(port_text)
    return raw, None


def _port_number(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad port {text!r}: give a number from 1 to 65535")
    return int(text)


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
    pat = canonical(pattern)
    host = canonical(mx_host)
    if not pat or not host:
        return False
    if pat.startswith("*."):
        suffix = pat[1:]  # ".example.com"
        if not host.endswith(suffix):
            return False
        first = host[: -len(suffix)]
        return bool(first) and "." not in first and "*" not in first
    return pat == host


def dane_name_matches(pattern: str, host: str) -> bool:
    """RFC 7672 3.2.3 (DANE-TA reference identities): exact, or `*` as the whole left-most
    label standing for one label. Laxer than `match_name`: no IDNA, no single-label guard,
    because DANE compares the names as the TLSA owner's zone publishes them."""
    pat = canonical(pattern)
    name = canonical(host)
    if pat.startswith("*."):
        first, _, rest = name.partition(".")
        return bool(first) and rest == pat[2:] and bool(rest)
    return pat == name
