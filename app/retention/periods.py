"""The data categories retention knows, their shipped defaults, and when an item becomes due (pure: no database).

A policy says: keep the items of a category `period_days` after `event`, then `action` them; `legal_basis` is
the text shown to the controller (Pexgle §13.3: what is kept, why, until when). The defaults below are the
desk's; docs/retention.md explains each. `covered` says whether a retention run acts on the category yet;
`actions` are the actions a policy of the category may choose (a store that cannot anonymise is not offered it).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

EVENTS = ("closed", "received", "delivered", "created", "ended", "login")
ACTIONS = ("delete", "anonymise")


@dataclass(frozen=True)
class Default:
    """A category's shipped policy."""

    category: str
    title: str
    period_days: int
    event: str
    action: str
    legal_basis: str
    covered: bool
    actions: tuple[str, ...] = ("delete", "anonymise")


DEFAULTS: dict[str, Default] = {
    d.category: d
    for d in (
        Default(
            "closed_ticket_content",
            "Closed tickets: messages, attachments, raw originals",
            365,
            "closed",
            "delete",
            "GDPR Art. 5(1)(e), 28(3)(g); WECO §8.2: kept one year after closing for follow-up questions, then deleted.",
            True,
        ),
        Default(
            "requester_identity",
            "Requester identity of closed tickets",
            180,
            "closed",
            "anonymise",
            "GDPR Art. 5(1)(c), (e): the requester's name and address are not needed once a ticket is closed for six months.",
            True,
        ),
        Default(
            "quarantined_mail", "Quarantined mail never released", 30, "received", "delete", "GDPR Art. 5(1)(e): held mail nobody released.", True, ("delete",)
        ),
        Default(
            "outbox_payloads",
            "Delivered outbox payloads",
            90,
            "delivered",
            "delete",
            "GDPR Art. 5(1)(e): the relay has the email; the desk keeps the record of sending, not the body.",
            True,
            ("delete",),
        ),
        Default(
            "dsr_records",
            "DSR records (identity minimised)",
            1095,
            "closed",
            "anonymise",
            "GDPR Art. 5(2) accountability: evidence that a request was handled, kept three years.",
            True,
            ("anonymise",),
        ),
        Default(
            "export_files",
            "Subject data export files",
            30,
            "created",
            "delete",
            "GDPR Art. 5(1)(e): an export is handed over, then deleted.",
            True,
            ("delete",),
        ),
        Default(
            "ended_sessions",
            "Ended staff sessions",
            90,
            "ended",
            "delete",
            "ASVS 3; GDPR Art. 5(1)(e): sessions kept for the sessions page.",
            True,
            ("delete",),
        ),
        Default(
            "staff_login_ips",
            "Staff login metadata (IP addresses)",
            90,
            "login",
            "anonymise",
            "GDPR Art. 32 security logging, then minimised.",
            True,
            ("anonymise",),
        ),
        Default(
            "audit_personal_parts",
            "Personal parts of audit events",
            2190,
            "created",
            "delete",
            "GDPR Art. 5(1)(e), 5(2); WECO §8.2: the audit chain stays for good; the personal parts of a month's events"
            " are crypto-shredded (its key destroyed) once the whole month is six years old.",
            True,
            ("delete",),
        ),
    )
}

CATEGORIES = tuple(DEFAULTS)


def is_valid(category: str, period_days: int, event: str, action: str, *, max_days: int) -> str | None:
    """Why a policy is not acceptable (None: it is); `max_days` is the configured maximum (RETENTION_MAX_DAYS)."""
    if category not in DEFAULTS:
        return f"unknown category {category!r} (known: {', '.join(CATEGORIES)})"
    if not 1 <= period_days <= max_days:
        return f"the period must be 1 to {max_days} days"
    if event != DEFAULTS[category].event:
        return f"{category} counts from '{DEFAULTS[category].event}'"
    if action not in ACTIONS:
        return f"the action must be one of {', '.join(ACTIONS)}"
    if action not in DEFAULTS[category].actions:
        return f"{category} can only {' or '.join(DEFAULTS[category].actions)}"
    return None


def cutoff(now: dt.datetime, period_days: int) -> dt.datetime:
    """Items whose event is at or before this instant are due (kept for exactly `period_days` days).

    A period reaching before the calendar's start (year 1) is the earliest instant: nothing is due, never an OverflowError."""
    try:
        return now - dt.timedelta(days=period_days)
    except OverflowError:
        return dt.datetime.min.replace(tzinfo=now.tzinfo)


def due(event_at: dt.datetime | None, now: dt.datetime, period_days: int) -> bool:
    """Whether an item whose event happened at `event_at` is past its period (no event yet: never)."""
    return event_at is not None and event_at <= cutoff(now, period_days)
