"""The bounce decoder: read an NDR or MTA log text and say what it means for the route.

All knowledge (patterns, codes, candidate findings, sources) lives in probes/data/bounces.json;
this module only applies it. `explain(text)` is pure and runs in time linear in its input:
only the first MAX_TEXT characters are read (the result says when the text was longer), and
every pattern in bounces.json uses bounded quantifiers only (tests/test_explain.py enforces it),
because a bounce quotes the remote server's own reply and a hostile server can plant text
that makes a backtracking pattern quadratic. `run_check()` then diagnoses the host or domain the text named and tells which
candidate the check confirmed.

Pasted text is hostile like any network text: it is kept as given in the result, and front
ends pass it through `safetext.visible()` before showing it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from typing import Any

from probes.model.errors import CheckError
from probes.model.names import canonical
from probes.model.options import MxOverride, Options
from probes.model.version import mxlens_version

SCHEMA = "mxlens/explain/1"
# A bounce is short and says what failed near its top; a whole mailbox pasted by mistake is
# not a bounce. Only this much is read, and the result says when the text was longer.
MAX_TEXT = 16 * 1024


@dataclass(frozen=True)
class Rule:
    """One recognisable text family from bounces.json."""

    id: str
    family: str
    title: str
    pattern: re.Pattern[str]
    codes: tuple[str, ...]
    stage: str | None
    candidates: tuple[str, ...]
    meaning: str
    source: str
    example: str | None = None


@dataclass(frozen=True)
class Detail:
    """An Exchange detail ([Message=...], {MSG=...}, "Reason: ...") that decides the cause,
    whatever status code stands before it."""

    id: str
    pattern: re.Pattern[str]
    stage: str
    candidates: tuple[str, ...]
    meaning: str
    source: str


@dataclass(frozen=True)
class Knowledge:
    updated: str
    rules: tuple[Rule, ...]
    status_code: tuple[re.Pattern[str], ...]
    reply_code: tuple[re.Pattern[str], ...]
    remote: tuple[re.Pattern[str], ...]
    recipient: tuple[re.Pattern[str], ...]
    detail: tuple[re.Pattern[str], ...] = ()
    inner_reply: tuple[re.Pattern[str], ...] = ()
    details: tuple[Detail, ...] = ()


@dataclass(frozen=True)
class Explanation:
    """What a bounce text says. Strings extracted from the text are kept as written."""

    recognised: bool
    status_code: str | None = None
    reply_code: str | None = None
    host: str | None = None
    address: str | None = None
    domain: str | None = None
    stage: str | None = None
    candidates: tuple[str, ...] = ()
    source: str | None = None
    rule: str | None = None  # the bounces.json rule id that matched
    family: str | None = None  # "Postfix", "Exchange Online", ...
    title: str | None = None
    meaning: str | None = None
    matched: str | None = None  # the part of the text the rule matched
    truncated: bool = False  # the text was longer than MAX_TEXT: only its start was read
    detail: str | None = None  # an Exchange [Message=...] detail, as written
    inner_reply: str | None = None  # the reply quoted in "... responded with: "421 ...""

    def target(self) -> tuple[str, str | None] | None:
        """What `--run` should check: (domain, mx host or None), or None when the text names
        neither. Without a recipient domain the named host is checked as its own domain (its
        MTA-STS/TLS-RPT results then belong to the host name, not the recipient)."""
        mx = self.host
        if self.domain:
            return self.domain, mx
        if mx:
            return mx, mx
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "version": mxlens_version(),
            "recognised": self.recognised,
            "status_code": self.status_code,
            "reply_code": self.reply_code,
            "host": self.host,
            "address": self.address,
            "domain": self.domain,
            "stage": self.stage,
            "candidates": list(self.candidates),
            "source": self.source,
            "rule": self.rule,
            "family": self.family,
            "title": self.title,
            "meaning": self.meaning,
            "matched": self.matched,
            "truncated": self.truncated,
            "detail": self.detail,
            "inner_reply": self.inner_reply,
        }


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


@lru_cache(maxsize=1)
def knowledge() -> Knowledge:
    """bounces.json, compiled. A broken data file is a bug: fail loudly at first use."""
    text = resources.files("probes").joinpath("data/bounces.json").read_text("utf-8")
    data = json.loads(text)
    rules = tuple(
        Rule(
            id=r["id"],
            family=r["family"],
            title=r["title"],
            pattern=_compile(r["pattern"]),
            codes=tuple(r.get("codes", ())),
            stage=r.get("stage"),
            candidates=tuple(r.get("candidates", ())),
            meaning=r["meaning"],
            source=r["source"],
            example=r.get("example"),
        )
        for r in data["rules"]
    )
    ex = data["extract"]
    return Knowledge(
        updated=data.get("updated", ""),
        rules=rules,
        status_code=tuple(_compile(p) for p in ex["status_code"]),
        reply_code=tuple(_compile(p) for p in ex["reply_code"]),
        remote=tuple(_compile(p) for p in ex["remote"]),
        recipient=tuple(_compile(p) for p in ex["recipient"]),
        detail=tuple(_compile(p) for p in ex.get("detail", ())),
        inner_reply=tuple(_compile(p) for p in ex.get("inner_reply", ())),
        details=tuple(
            Detail(
                id=d["id"],
                pattern=_compile(d["pattern"]),
                stage=d["stage"],
                candidates=tuple(d["candidates"]),
                meaning=d["meaning"],
                source=d["source"],
            )
            for d in data.get("details", ())
        ),
    )


def rules() -> tuple[Rule, ...]:
    return knowledge().rules


def _normalise(text: str) -> str:
    # Bounces wrap lines anywhere ("...offered by host\n    mx.example[192.0.2.7]"): one space.
    return re.sub(r"\s+", " ", text[:MAX_TEXT]).strip()


def _first(patterns: Iterable[re.Pattern[str]], text: str) -> str | None:
    for pattern in patterns:
        m = pattern.search(text)
        if m:
            return m.group(1)
    return None


def _clean_host(name: str | None) -> str | None:
    if not name:
        return None
    name = canonical(name)
    return name or None


def _remote(k: Knowledge, text: str) -> tuple[str | None, str | None]:
    host = address = None
    for pattern in k.remote:
        m = pattern.search(text)
        if not m:
            continue
        groups = m.groupdict()
        if host is None and groups.get("host"):
            host = _clean_host(groups["host"])
        if address is None and groups.get("address"):
            address = groups["address"].removeprefix("IPv6:").removeprefix("ipv6:")
        if host and address:
            break
    if host is not None and _looks_like_ip(host):
        address, host = address or host, None
    return host, address


def _looks_like_ip(text: str) -> bool:
    return bool(re.fullmatch(r"\d{1,3}(?:\.\d{1,3}){3}", text)) or ":" in text


def _recipient_domain(k: Knowledge, text: str) -> str | None:
    for pattern in k.recipient:
        m = pattern.search(text)
        if m:
            return _clean_host(m.group("domain"))
    return None


def explain(text: str) -> Explanation:
    """Decode one bounce or log text. Raises CheckError for empty text (exit 3)."""
    if not text or not text.strip():
        raise CheckError("no text to explain: paste a bounce message or a mail log line")
    k = knowledge()
    flat = _normalise(text)
    host, address = _remote(k, flat)
    base = Explanation(
        recognised=False,
        status_code=_first(k.status_code, flat),
        reply_code=_first(k.reply_code, flat),
        host=host,
        address=address,
        domain=_recipient_domain(k, flat),
        truncated=len(text) > MAX_TEXT,
    )
    decoded = _match_rule(k, flat, base)
    if not decoded.recognised:
        return decoded
    inner_text = _first_group(k.inner_reply, flat, "inner")
    if inner_text is not None:
        # "Primary target IP address responded with: "421 ..."": the quoted reply says why.
        inner = _match_rule(k, inner_text, Explanation(recognised=False))
        decoded = replace(decoded, inner_reply=inner_text)
        if inner.recognised:
            decoded = replace(
                decoded,
                stage=inner.stage,
                candidates=inner.candidates,
                meaning=f"{decoded.meaning} The quoted reply: {inner.meaning}",
            )
    detail_text = _first_group(k.detail, flat, "detail")
    if detail_text is not None:
        decoded = replace(decoded, detail=detail_text.strip())
        known = next((d for d in k.details if d.pattern.search(detail_text.strip())), None)
        if known is not None:
            decoded = replace(
                decoded,
                stage=known.stage,
                candidates=known.candidates,
                meaning=f"{decoded.title}, detail {detail_text.strip()}: {known.meaning}",
                source=f"{decoded.source}; detail: {known.source}",
            )
    return decoded


def _match_rule(k: Knowledge, flat: str, base: Explanation) -> Explanation:
    """The first rule that matches flat, applied to base (base itself when none does)."""
    for rule in k.rules:
        m = rule.pattern.search(flat)
        if m is None:
            continue
        return replace(
            base,
            recognised=True,
            stage=rule.stage,
            candidates=rule.candidates,
            source=rule.source,
            rule=rule.id,
            family=rule.family,
            title=rule.title,
            meaning=rule.meaning,
            matched=m.group(0)[:300],
        )
    return base


def _first_group(patterns: Iterable[re.Pattern[str]], text: str, group: str) -> str | None:
    for pattern in patterns:
        m = pattern.search(text)
        if m:
            return m.group(group)
    return None


def confirmed_cause(explanation: Explanation, finding_ids: Iterable[str]) -> str | None:
    """The first candidate (in the rule's order of likelihood) that the check found."""
    found = set(finding_ids)
    for fid in explanation.candidates:
        if fid in found:
            return fid
    return None


def check_options(explanation: Explanation, options: Options) -> tuple[str, Options]:
    """The domain and Options for checking what the text named. A --mx the user gave wins;
    otherwise the host the text named is probed (`--mx host`). CheckError when the text
    names no domain and no host."""
    target = explanation.target()
    if target is None:
        raise CheckError("the text names no recipient domain and no host: nothing to check")
    domain, mx = target
    if mx and not options.mx:
        options = replace(options, mx=(MxOverride(mx),))
    return domain, options


async def run_check(explanation: Explanation, options: Options) -> tuple[dict[str, Any], int]:
    """Explain + check: the explain document with "check" (the check --json document) and
    "cause" (the confirmed candidate or null), and the check's exit code."""
    from probes.diagnose import diagnose
    from probes.report import Report

    domain, opts = check_options(explanation, options)
    report = Report(domain, opts)
    async for event in diagnose(domain, opts):
        report.add(event)
    doc = explanation.to_json()
    doc["check"] = report.to_json()
    problems = [f.id for f in report.findings if f.severity in ("error", "warning")]
    # An info-graded candidate (e.g. dane.dnssec_unsigned) still confirms the text's cause.
    doc["cause"] = confirmed_cause(explanation, problems) or confirmed_cause(
        explanation, (f.id for f in report.findings if f.severity != "ok")
    )
    return doc, report.exit_code()


def to_text(explanation: Explanation, *, catalog_titles: dict[str, str] | None = None) -> str:
    """A short plain-text decoding for terminals and tickets (network text made visible)."""
    from probes.model.findings import catalog
    from probes.model.safetext import visible

    titles = catalog_titles
    if titles is None:
        titles = {fid: entry.get("title", "") for fid, entry in catalog().items()}
    e = explanation
    out: list[str] = []
    if e.recognised:
        out.append(f"Recognised: {visible(e.family or '')}: {visible(e.title or '')}")
        out.append(f"  meaning:  {visible(e.meaning or '')}")
    else:
        out.append("Not recognised: mxlens knows no bounce or log text like this one.")
    codes = " ".join(x for x in (e.reply_code, e.status_code) if x)
    out.append(f"  code:     {visible(codes) if codes else '-'}")
    remote = e.host or ""
    if e.address:
        remote = f"{remote} [{e.address}]".strip()
    out.append(f"  remote:   {visible(remote) if remote else '-'}")
    out.append(f"  domain:   {visible(e.domain) if e.domain else '-'}")
    if e.recognised:
        out.append(f"  stage:    {e.stage or '-'}")
        out.append("  possible causes (check to confirm):")
        for fid in e.candidates:
            out.append(f"    {fid:28} {visible(titles.get(fid, ''))}")
        out.append(f"  source:   {visible(e.source or '')}")
    if e.truncated:
        out.append(f"  (only the first {MAX_TEXT // 1024} KB of the text were read)")
    target = e.target()
    if target is None:
        out.append("No domain or host found in the text: nothing to check.")
    else:
        domain, mx = target
        cmd = f"mxlens check {domain}" + (f" --mx {mx}" if mx and mx != domain else "")
        out.append(f"Next: {visible(cmd)}   (or: mxlens explain --run ...)")
    return "\n".join(out) + "\n"
