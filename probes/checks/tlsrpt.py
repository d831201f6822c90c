"""SMTP TLS Reporting (RFC 8460): the `_smtp._tls` TXT record.

TLS-RPT does not change delivery; it decides whether anyone hears about TLS failures. A
missing or broken record means the failures this tool finds go unreported to the domain.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from probes.checks.tag_record import TagRecordError, read_tag_record, txt_strings
from probes.model.events import Event, FindingRaised, TlsRptChecked, Where
from probes.model.findings import raise_finding
from probes.net.dns import Resolver

VERSION = "v=TLSRPTv1"
# The address part of a mailto: URI, loosely: local@domain, no spaces.
_MAILTO = re.compile(r"mailto:[^@\s,;]+@[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?(?:\?\S*)?")
_HTTPS = re.compile(r"https://[A-Za-z0-9\[](?:[^\s,;]*)")


@dataclass(frozen=True)
class TlsRptRecord:
    text: str
    rua: tuple[str, ...]
    extensions: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class TlsRptError:
    """Why the `_smtp._tls` records do not give one valid record; text is the record at fault."""

    reason: str
    text: str | None = None


def _check_uri(uri: str) -> str | None:
    """A reason the rua URI is not usable, or None."""
    lower = uri.lower()
    if lower.startswith("mailto:"):
        if not _MAILTO.fullmatch(uri):
            return f"{uri[:80]!r} is not a valid mailto: address"
        return None
    if lower.startswith("https://"):
        if not _HTTPS.fullmatch(uri):
            return f"{uri[:80]!r} is not a valid https:// URL"
        return None
    if lower.startswith("http://"):
        return f"{uri[:80]!r}: reports go only to https:// or mailto: (http:// is not allowed)"
    return f"{uri[:80]!r} is neither a mailto: nor an https: URI"


def parse_tlsrpt(txt_records: list[str]) -> TlsRptRecord | TlsRptError | None:
    """Pick and parse the `v=TLSRPTv1` record among the TXT strings of `_smtp._tls.<domain>`.

    None: no record begins with `v=TLSRPTv1` (TLS-RPT not published). TlsRptError: more than
    one such record, or a syntax error, with the reason."""
    record = read_tag_record(txt_records, VERSION, known=("rua",))
    if record is None:
        return None
    if isinstance(record, TagRecordError):
        return TlsRptError(record.reason, record.text)
    value = record.fields.get("rua")
    if value is None:
        return TlsRptError("no rua= field: reports have nowhere to go", record.text)
    uris = tuple(u.strip(" \t") for u in value.split(","))
    if not value.strip(" \t") or any(not u for u in uris):
        return TlsRptError("rua= has an empty address", record.text)
    for uri in uris:
        reason = _check_uri(uri)
        if reason is not None:
            return TlsRptError(f"rua: {reason}", record.text)
    return TlsRptRecord(text=record.text, rua=uris, extensions=record.extensions)


async def check_tlsrpt(domain_ascii: str, resolver: Resolver) -> AsyncIterator[Event]:
    """Look up and judge `_smtp._tls.<domain>`. Yields TlsRptChecked, then a finding when the
    record is missing (info) or invalid (warning)."""
    where = Where(host=domain_ascii)
    name = f"_smtp._tls.{domain_ascii}"
    answer = await resolver.query(name, "TXT")
    if answer.status not in ("NOERROR", "NODATA", "NXDOMAIN"):
        # A lookup failure says nothing about what is published; the DNS log shows it.
        yield TlsRptChecked(domain_ascii, None, (), f"TXT {name}: {answer.status}")
        return
    parsed = parse_tlsrpt(txt_strings(answer))
    if parsed is None:
        yield TlsRptChecked(domain_ascii, None, (), None)
        yield FindingRaised(
            raise_finding(
                "tlsrpt.missing",
                where,
                f"no TLS-RPT record at {name}",
                evidence=(f"dns:{name}/TXT",),
            )
        )
        return
    if isinstance(parsed, TlsRptError):
        yield TlsRptChecked(domain_ascii, parsed.text, (), parsed.reason)
        yield FindingRaised(
            raise_finding(
                "tlsrpt.invalid",
                where,
                f"{name}: {parsed.reason}",
                evidence=(f"dns:{name}/TXT",),
            )
        )
        return
    yield TlsRptChecked(domain_ascii, parsed.text, parsed.rua, None)
