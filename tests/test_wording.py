"""Counted nouns in report text."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from probes.checks.endpoints import _in_days
from probes.model.wording import count


def test_count_picks_the_number() -> None:
    assert count(1, "day") == "1 day"
    assert count(2, "day") == "2 days"
    assert count(0, "entry", "entries") == "0 entries"
    assert count(1, "entry", "entries") == "1 entry"


def test_days_and_hours_in_endpoint_details() -> None:
    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    assert _in_days(now + timedelta(days=1, hours=2), now) == "in 1 day"
    assert _in_days(now - timedelta(days=1, hours=2), now) == "1 day ago"
    assert _in_days(now + timedelta(hours=1), now) == "in 1 hour"
    assert _in_days(now + timedelta(days=3), now) == "in 3 days"
