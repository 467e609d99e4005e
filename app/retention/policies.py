"""The effective retention policy of a category for a controller, and changes to it (versioned, audit-logged).

The newest row of (category, controller) is the controller's override unless it was withdrawn; otherwise
the newest desk-wide row (controller NULL); otherwise the shipped default, written as desk-wide version 1 by
`effective(..., materialise=True)` so a run names the exact version it acted under.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.service import record
from app.controllers.models import Controller
from app.exceptions import DeskError, Refused
from app.principal import Principal
from app.retention.models import RetentionPolicy
from app.retention.periods import CATEGORIES, DEFAULTS, is_valid


class RetentionError(DeskError):
    """Base of retention's errors; messages are safe to show."""


class InvalidPolicy(RetentionError, Refused):
    """A policy outside what is allowed (unknown category, period beyond the maximum, wrong event, unknown controller)."""


# The longest legal-basis text a policy keeps (characters).
MAX_BASIS = 2000


def _known_controller(session: Session, controller_id: int | None) -> None:
    if controller_id is not None and session.get(Controller, controller_id) is None:
        raise InvalidPolicy(f"no controller {controller_id}")


@dataclass(frozen=True)
class Effective:
    """The policy in force: its numbers, and the version row behind it (None: the shipped default, never written)."""

    category: str
    controller_id: int | None
    period_days: int
    event: str
    action: str
    legal_basis: str
    version_id: int | None
    version: int
    source: str  # "default", "desk", "controller"


def _newest(session: Session, category: str, controller_id: int | None) -> RetentionPolicy | None:
    owner = RetentionPolicy.controller_id.is_(None) if controller_id is None else RetentionPolicy.controller_id == controller_id
    stmt = select(RetentionPolicy).where(RetentionPolicy.category == category, owner).order_by(RetentionPolicy.version.desc()).limit(1)
    return session.scalars(stmt).first()


def _of(row: RetentionPolicy, controller_id: int | None, source: str) -> Effective:
    return Effective(row.category, controller_id, row.period_days, row.event, row.action, row.legal_basis, row.id, row.version, source)


def effective(session: Session, category: str, controller_id: int | None, *, now: dt.datetime, materialise: bool = False) -> Effective:
    """The policy in force for a controller (None: desk-wide); `materialise` writes the default as version 1 (flush)."""
    if controller_id is not None:
        own = _newest(session, category, controller_id)
        if own is not None and not own.withdrawn:
            return _of(own, controller_id, "controller")
    desk = _newest(session, category, None)
    if desk is not None:
        return _of(desk, controller_id, "desk")
    d = DEFAULTS[category]
    if not materialise:
        return Effective(category, controller_id, d.period_days, d.event, d.action, d.legal_basis, None, 0, "default")
    row = RetentionPolicy(
        category=category,
        controller_id=None,
        version=1,
        period_days=d.period_days,
        event=d.event,
        action=d.action,
        legal_basis=d.legal_basis,
        withdrawn=False,
        created_by="system:retention-defaults",
        created_at=now,
    )
    session.add(row)
    session.flush()
    return _of(row, controller_id, "desk")


def controllers_with_overrides(session: Session) -> list[int]:
    """The controllers that ever had an override of any category (withdrawn ones included), by id."""
    stmt = select(RetentionPolicy.controller_id).where(RetentionPolicy.controller_id.is_not(None)).distinct()
    return sorted(int(c) for c in session.scalars(stmt) if c is not None)


def all_effective(session: Session, controller_ids: list[int | None], *, now: dt.datetime) -> list[Effective]:
    """Every category's policy for each of these controllers (None: desk-wide), category order then controller."""
    return [effective(session, c, cid, now=now) for c in CATEGORIES for cid in controller_ids]


def change(
    session: Session,
    category: str,
    *,
    controller_id: int | None,
    period_days: int,
    action: str,
    legal_basis: str,
    max_days: int,
    by: Principal,
    now: dt.datetime,
) -> RetentionPolicy:
    """Write the next version of a policy (flush). Audited.

    InvalidPolicy (nothing written) when outside the allowed range, for an unknown controller ("no controller N"),
    or when the legal basis is empty or longer than MAX_BASIS characters."""
    event = DEFAULTS[category].event if category in DEFAULTS else ""
    problem = is_valid(category, period_days, event, action, max_days=max_days)
    if problem:
        raise InvalidPolicy(problem)
    legal_basis = " ".join(legal_basis.split())
    if not legal_basis:
        raise InvalidPolicy("a policy needs its legal basis")
    if len(legal_basis) > MAX_BASIS:
        raise InvalidPolicy(f"the legal basis is longer than {MAX_BASIS} characters")
    _known_controller(session, controller_id)
    if controller_id is None and _newest(session, category, None) is None:
        effective(session, category, None, now=now, materialise=True)  # the default becomes version 1, the change 2
    return _next_version(session, category, controller_id, (period_days, event, action, legal_basis.strip()), withdrawn=False, by=by, now=now)


def withdraw(session: Session, category: str, *, controller_id: int, by: Principal, now: dt.datetime) -> RetentionPolicy:
    """End a controller's override (a new version marked withdrawn; the desk-wide policy applies again). Audited.

    InvalidPolicy (nothing written) for an unknown category or controller, or when the controller has no override in force."""
    if category not in DEFAULTS:
        raise InvalidPolicy(f"unknown category {category[:40]!r} (known: {', '.join(CATEGORIES)})")
    _known_controller(session, controller_id)
    last = _newest(session, category, controller_id)
    if last is None or last.withdrawn:
        raise InvalidPolicy(f"controller {controller_id} has no override of {category}")
    desk = effective(session, category, None, now=now, materialise=True)
    terms = (desk.period_days, desk.event, desk.action, desk.legal_basis)
    return _next_version(session, category, controller_id, terms, withdrawn=True, by=by, now=now)


def _next_version(
    session: Session, category: str, controller_id: int | None, terms: tuple[int, str, str, str], *, withdrawn: bool, by: Principal, now: dt.datetime
) -> RetentionPolicy:
    """Write version n+1 of (category, controller) with these (period, event, action, basis) and audit it (flush)."""
    last = _newest(session, category, controller_id)
    period_days, event, action, legal_basis = terms
    row = RetentionPolicy(
        category=category,
        controller_id=controller_id,
        version=(last.version if last else 0) + 1,
        period_days=period_days,
        event=event,
        action=action,
        legal_basis=legal_basis,
        withdrawn=withdrawn,
        created_by=by.label[:100],
        created_at=now,
    )
    session.add(row)
    session.flush()
    details = {"category": category, "version": row.version, "period_days": period_days, "action": action, "withdrawn": withdrawn}
    record(
        session,
        by=by,
        action="retention.policy_changed",
        target_type="retention_policy",
        target_id=row.id,
        controller_id=controller_id,
        details=details,
        now=now,
    )
    return row
