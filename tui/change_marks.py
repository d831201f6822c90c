"""The "changed since the last check" marks the Domain, Chain and Findings panes show.

The engine decides what changed (probes.history.diff); this module only turns those changes
into short words next to the lines they concern. A mark is a word (CHANGED, NEW, GONE, was
...) as well as a colour, so it reads in 16 colours and under NO_COLOR.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text

from probes.history.diff import Change, RunDiff, short_time

STYLE = "bold magenta"

# A few words per change kind, for the tag next to a line.
SHORT = {
    "cert.fingerprint": "leaf",
    "cert.issuer": "issuer",
    "cert.not_after": "notAfter",
    "cert.subject": "subject",
    "cert.trust": "trust",
    "tls.version": "TLS version",
    "smtp.starttls": "STARTTLS",
    "smtp.outcome": "outcome",
    "dane.status": "DANE",
    "session.added": "newly probed",
    "address.added": "new address",
    "address.removed": "address removed",
    "mx.added": "new MX",
    "mta_sts.mode": "mode",
    "mta_sts.id": "policy id",
    "tls_rpt.record": "record",
}


def tag(changes: Iterable[Change]) -> Text | None:
    """ "CHANGED: leaf, issuer" for these changes, or None when there are none."""
    words = list(dict.fromkeys(SHORT.get(c.kind, c.kind) for c in changes))
    if not words:
        return None
    return Text(f"CHANGED: {', '.join(words)}", STYLE)


def summary(diff: RunDiff | None) -> Text | None:
    """The domain line's note: how much changed since which run."""
    if diff is None:
        return None
    since = short_time(diff.a.started)
    if not diff.changes:
        return Text(f"no change since {since}", "dim")
    n = len(diff.changes)
    return Text(f"CHANGED since {since}: {n} change{'s' if n != 1 else ''} (h: history)", STYLE)


def of_address(diff: RunDiff | None, host: str, address: str) -> list[Change]:
    """Changes about one MX address, findings left out (the address's status shows those)."""
    if diff is None:
        return []
    return [
        c
        for c in diff.changes
        if c.host == host and c.address == address and not c.kind.startswith("finding.")
    ]


def of_host(diff: RunDiff | None, host: str) -> list[Change]:
    """Changes about an MX host as a whole (it is new, or its addresses changed)."""
    if diff is None:
        return []
    return [
        c
        for c in diff.changes
        if c.host == host and c.kind in ("mx.added", "address.added", "address.removed")
    ]


def of_kind(diff: RunDiff | None, prefix: str) -> list[Change]:
    return [] if diff is None else [c for c in diff.changes if c.kind.startswith(prefix)]
