"""MTA-STS (RFC 8461): the `_mta-sts` TXT record, the policy file, and MX coverage.

A sender discovers MTA-STS through `_mta-sts.<domain>` TXT, fetches the policy over HTTPS from
`mta-sts.<domain>` (PKIX-valid certificate, status 200, no redirects, text/plain), and in
`enforce` mode refuses to deliver to an MX host that no `mx:` pattern covers. This module
checks each of those steps the way a sender would and says which one breaks.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from probes.checks.tag_record import TagRecordError, read_tag_record, txt_strings
from probes.model.events import Event, FindingRaised, MtaStsChecked, Where
from probes.model.findings import raise_finding
from probes.model.names import mx_matches
from probes.model.safetext import decode
from probes.net.dns import Resolver
from probes.net.http import Fetcher, HttpResult

# RFC 8461 3.2 names no limit; 64 KiB is what common senders accept.
POLICY_MAX_BYTES = 64 * 1024
MAX_AGE_LIMIT = 31_557_600  # one year, RFC 8461 3.2
POLICY_PATH = "/.well-known/mta-sts.txt"

_WSP = " \t"
_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_POLICY_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?")
_MODES = ("enforce", "testing", "none")


@dataclass(frozen=True)
class StsRecord:
    """A syntactically valid `v=STSv1` record."""

    text: str
    id: str
    extensions: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RecordError:
    """Why the `_mta-sts` TXT records do not give one valid policy record.
    `text` is the offending record (the first one when there are several)."""

    reason: str
    text: str | None = None


@dataclass(frozen=True)
class Policy:
    version: str
    mode: str
    max_age: int
    mx: tuple[str, ...]
    extensions: tuple[tuple[str, str], ...] = ()


def parse_sts_record(txt_records: list[str]) -> StsRecord | RecordError | None:
    """Pick and parse the `v=STSv1` record among the TXT strings of `_mta-sts.<domain>`.

    None: no record begins with `v=STSv1`, MTA-STS is not used. RecordError: more than one
    such record, a syntax error, or a record that looks meant as STSv1 but that senders
    ignore (leading space, BOM, wrong case)."""
    record = read_tag_record(txt_records, "v=STSv1", known=("id",))
    if record is None:
        return None
    if isinstance(record, TagRecordError):
        return RecordError(record.reason, record.text)
    record_id = record.fields.get("id")
    if record_id is None:
        return RecordError("no id= field", record.text)
    if not _ID.fullmatch(record_id):
        return RecordError(
            f"id={record_id!r} must be 1 to 32 letters or digits (no spaces, dashes or dots)",
            record.text,
        )
    return StsRecord(text=record.text, id=record_id, extensions=record.extensions)


def _valid_mx_pattern(value: str) -> bool:
    name = value[2:] if value.startswith("*.") else value
    name = name[:-1] if name.endswith(".") else name
    labels = name.split(".")
    return len(labels) >= 2 and all(_LABEL.fullmatch(label) for label in labels)


# A policy of 10,000 bad lines must not become a 259 KB finding: the first few say enough.
MAX_ERRORS_SHOWN = 5


def capped(errors: list[str], limit: int = MAX_ERRORS_SHOWN) -> list[str]:
    """The first `limit` errors, and "and N more" for the rest."""
    if len(errors) <= limit:
        return errors
    return [*errors[:limit], f"and {len(errors) - limit} more"]


def parse_policy(text: str) -> Policy | list[str]:
    """Parse an RFC 8461 3.2 policy file. Returns the Policy, or every error found (one line
    each, with the line number), so a user can fix them all at once."""
    errors: list[str] = []
    if text.startswith("\ufeff"):
        errors.append("line 1: the file starts with a byte-order mark (UTF-8 BOM)")
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the terminator of the last line
    values: dict[str, str] = {}
    mx: list[str] = []
    extensions: list[tuple[str, str]] = []
    first_key: str | None = None
    for number, raw in enumerate(lines, start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        if "\r" in line:
            errors.append(f"line {number}: stray carriage return (lines end in LF or CRLF)")
            continue
        if not line.strip(_WSP):
            continue  # blank lines: outside the grammar, but harmless to every sender seen
        key, sep, value = line.partition(":")
        if not sep:
            errors.append(f"line {number}: no ':' in {line[:60]!r}")
            continue
        if not _POLICY_KEY.fullmatch(key):
            errors.append(f"line {number}: {key[:40]!r} is not a valid field name")
            continue
        value = value.strip(_WSP)
        if first_key is None:
            first_key = key
        if key == "mx":
            if not _valid_mx_pattern(value):
                errors.append(f"line {number}: mx {value[:80]!r} is not a host name or *.pattern")
            else:
                mx.append(value)
            continue
        if key in values:
            errors.append(f"line {number}: {key} appears more than once")
            continue
        values[key] = value
        if key not in ("version", "mode", "max_age"):
            extensions.append((key, value))  # unknown keys are ignored (RFC 8461 3.2)

    version = values.get("version")
    if version is None:
        errors.append("no version field (must be 'version: STSv1')")
    elif version != "STSv1":
        errors.append(f"version is {version[:40]!r}, must be 'STSv1'")
    if version is not None and first_key != "version":
        errors.append("version must be the first field")

    mode = values.get("mode")
    if mode is None:
        errors.append("no mode field (enforce, testing or none)")
    elif mode not in _MODES:
        errors.append(f"mode is {mode[:40]!r}, must be enforce, testing or none (lower case)")

    max_age_text = values.get("max_age")
    max_age = 0
    if max_age_text is None:
        errors.append("no max_age field")
    elif not re.fullmatch(r"[0-9]{1,10}", max_age_text):
        errors.append(f"max_age {max_age_text[:40]!r} is not a whole number of seconds")
    else:
        max_age = int(max_age_text)
        if max_age > MAX_AGE_LIMIT:
            errors.append(f"max_age {max_age} is above the limit of {MAX_AGE_LIMIT} (one year)")

    if not mx and mode in ("enforce", "testing"):
        errors.append(f"no mx field: mode {mode} needs at least one")

    if errors:
        return errors
    assert version is not None and mode is not None
    return Policy(
        version=version, mode=mode, max_age=max_age, mx=tuple(mx), extensions=tuple(extensions)
    )


def policy_url(domain_ascii: str) -> str:
    return f"https://mta-sts.{domain_ascii}{POLICY_PATH}"


def _fetch_problem(result: HttpResult) -> str | None:
    """Why a sender would not accept this fetch as a policy, or None."""
    if result.redirected_to:
        return f"redirect to {result.redirected_to} (RFC 8461 3.3 forbids redirects)"
    if result.status is not None and 300 <= result.status < 400:
        return f"HTTP {result.status} redirect (RFC 8461 3.3 forbids redirects)"
    if not result.ok and result.error:
        return result.error
    if result.status != 200:
        return f"HTTP {result.status}, must be 200" if result.status else "no HTTP answer"
    media = (result.content_type or "").split(";", 1)[0].strip().lower()
    if media != "text/plain":
        shown = result.content_type or "none"
        return f"Content-Type is {shown[:60]!r}, must be text/plain"
    if len(result.body) > POLICY_MAX_BYTES:
        return f"policy is larger than {POLICY_MAX_BYTES} bytes"
    return None


async def check_mtasts(
    domain_ascii: str, mx_hosts: list[str], resolver: Resolver, fetcher: Fetcher
) -> AsyncIterator[Event]:
    """Check the domain's MTA-STS as a sender would. Yields one MtaStsChecked, then findings.

    MtaStsChecked.error is None exactly when the record and policy are valid (an uncovered MX
    host is a finding, not an error of the policy)."""
    where = Where(host=domain_ascii)
    record_name = f"_mta-sts.{domain_ascii}"
    answer = await resolver.query(record_name, "TXT")
    if answer.status not in ("NOERROR", "NODATA", "NXDOMAIN"):
        # No finding: a sender without a cached policy proceeds as if none were published;
        # the DNS log shows the failure, and the event says MTA-STS could not be checked.
        yield MtaStsChecked(
            domain_ascii, None, None, None, None, None, (), f"TXT {record_name}: {answer.status}"
        )
        return

    parsed = parse_sts_record(txt_strings(answer))
    if parsed is None:
        yield MtaStsChecked(domain_ascii, None, None, None, None, None, (), None)
        return
    if isinstance(parsed, RecordError):
        yield MtaStsChecked(
            domain_ascii, parsed.text, None, None, None, None, (), f"record: {parsed.reason}"
        )
        yield FindingRaised(
            raise_finding(
                "mtasts.record_invalid",
                where,
                f"{record_name}: {parsed.reason}",
                evidence=(f"dns:{record_name}/TXT",),
            )
        )
        return

    url = policy_url(domain_ascii)
    result = await fetcher.get(url, max_bytes=POLICY_MAX_BYTES)
    problem = _fetch_problem(result)
    if problem is not None:
        yield MtaStsChecked(
            domain_ascii, parsed.text, parsed.id, None, None, None, (), f"fetch: {problem}"
        )
        fid = "mtasts.webpki_invalid" if problem.startswith("TLS:") else "mtasts.fetch_failed"
        yield FindingRaised(
            raise_finding(fid, where, f"{url}: {problem}", evidence=(f"endpoint:{url}",))
        )
        return

    text = decode(result.body)
    policy = parse_policy(text)
    if isinstance(policy, list):
        policy = capped(policy)
        yield MtaStsChecked(
            domain_ascii,
            parsed.text,
            parsed.id,
            text,
            None,
            None,
            (),
            "policy: " + "; ".join(policy),
        )
        yield FindingRaised(
            raise_finding(
                "mtasts.policy_invalid",
                where,
                f"{url}: " + "; ".join(policy),
                evidence=(f"endpoint:{url}",),
            )
        )
        return

    yield MtaStsChecked(
        domain_ascii, parsed.text, parsed.id, text, policy.mode, policy.max_age, policy.mx, None
    )
    uncovered = [h for h in mx_hosts if not any(mx_matches(p, h) for p in policy.mx)]
    patterns = ", ".join(policy.mx)
    if policy.mode == "enforce":
        for host in uncovered:
            yield FindingRaised(
                raise_finding(
                    "mtasts.mx_not_covered",
                    Where(host=host),
                    f"MX {host} matches no mx pattern of the {domain_ascii} policy ({patterns})",
                    evidence=(f"endpoint:{url}",),
                )
            )
    elif policy.mode == "testing":
        summary = f"{domain_ascii} publishes MTA-STS in testing mode"
        if uncovered:
            summary += "; under enforce these MX hosts would fail: " + ", ".join(uncovered)
        yield FindingRaised(
            raise_finding("mtasts.testing", where, summary, evidence=(f"endpoint:{url}",))
        )
