"""The 24-hour forwarding clock (Pexgle §11.3, WECO §12.1): pure functions, time passed in.

There are no extensions: the forward is due 24 hours after the subject's first
message reached the desk, whatever the weekday, and a missed deadline is
recorded as *missed* with a reason, never moved.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

FORWARD_WITHIN = dt.timedelta(hours=24)
ESCALATE_BEFORE = dt.timedelta(hours=4)
# Below this much time left the dashboard shows a request as urgent (amber); escalation turns it red.
WARN_BEFORE = dt.timedelta(hours=12)

Urgency = Literal["done", "ok", "warn", "escalated", "missed"]


def due_at(received_at: dt.datetime) -> dt.datetime:
    """When the forward to the controller is due."""
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    return received_at + FORWARD_WITHIN


def escalate_at(due: dt.datetime) -> dt.datetime:
    """When privacy officers are alerted about a request still not forwarded."""
    return due - ESCALATE_BEFORE


def time_left(due: dt.datetime, now: dt.datetime) -> dt.timedelta:
    """Time until the deadline (negative once passed)."""
    return due - now


def urgency(due: dt.datetime, now: dt.datetime, *, forwarded: bool) -> Urgency:
    """The colour class of a request on the dashboard."""
    if forwarded:
        return "done"
    left = due - now
    if left <= dt.timedelta(0):
        return "missed"
    if left <= ESCALATE_BEFORE:
        return "escalated"
    if left <= WARN_BEFORE:
        return "warn"
    return "ok"


def should_escalate(due: dt.datetime, now: dt.datetime, *, forwarded: bool, escalated: bool) -> bool:
    """True when the sweeper must alert privacy officers now."""
    return not forwarded and not escalated and now >= escalate_at(due)


def is_missed(due: dt.datetime, now: dt.datetime, *, forwarded: bool) -> bool:
    """True when the request has missed its deadline (it passed without the forward)."""
    return not forwarded and now >= due


def format_left(left: dt.timedelta) -> str:
    """'5 h 03 min', or 'overdue 1 h 10 min' once the deadline passed."""
    seconds = int(left.total_seconds())
    prefix = "overdue " if seconds < 0 else ""
    seconds = abs(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{prefix}{hours} h {rest // 60:02d} min"


@dataclass(frozen=True)
class Week:
    """One week of the 12-week chart."""

    start: dt.datetime
    received: int
    forwarded_in_time: int
    median_seconds: int | None


def week_starts(now: dt.datetime, weeks: int = 12) -> list[dt.datetime]:
    """Monday 00:00 UTC of each of the last `weeks` weeks, oldest first (the last is this week)."""
    today = now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    monday = today - dt.timedelta(days=today.weekday())
    return [monday - dt.timedelta(weeks=weeks - 1 - i) for i in range(weeks)]


def median(values: list[int]) -> int | None:
    """The median of whole seconds (the lower middle value for an even count, as Postgres' percentile_disc), or None."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]
