"""Start, advance and follow deletion runs: the one place the desk deletes, anonymises, redacts or rectifies in bulk.

A run is a row (the database is the source of truth): `start` writes it
with its authority, scope and action and rings a worker after the commit;
`step` advances it by one batch (the plan first, then each store in turn,
every batch through the hold check); `advance` takes the batch-job shape
(`app.jobs.batch.run_batches`: one committed transaction per batch, a stop
between batches) and, at the end, clears the database's own copies
(`app.deletion.sqlite`). The engine imports no domain: the domain behind an
authority adds its stores and records through `app.deletion.authorities`,
and holds answer through `app.deletion.holds`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.audit.service import record
from app.deletion import sqlite
from app.deletion.authorities import AUTHORITIES
from app.deletion.categories import RECORD_STORES
from app.deletion.holds import HOLDS
from app.deletion.models import ACTIONS, AUTHORITY_KINDS, SCOPE_KINDS, UNFINISHED, DeletionRun
from app.deletion.plan import SUPPORTED, make_plan, phases, stores_for
from app.deletion.report import Report, changes
from app.deletion.stores import RunContext
from app.exceptions import DeskError, NotFound, Refused
from app.jobs.batch import BatchProgress, Clock, SessionScope, run_batches
from app.jobs.doorbell import Doorbell
from app.jobs.service import clear_state, get_state, save_state
from app.principal import Principal
from app.tickets.models import key_owner_for

log = logging.getLogger(__name__)

RUN_ACTOR = "run_deletion"
# A run not advanced for this long lost its doorbell or its worker: the sweeper rings again.
STALE_AFTER = dt.timedelta(minutes=2)
DOORBELL = Doorbell(
    RUN_ACTOR,
    key="deletion_doorbells",
    log=log,
    broker_down="deletion: broker unavailable (%s); the sweeper will advance run %s",
    no_actor="deletion: no %s actor declared; the sweeper will advance %d run(s)",
)


class DeletionError(DeskError):
    """Base of the engine's errors; messages are safe to show."""


class RunNotFound(DeletionError, NotFound):
    """No run with that id."""


class InvalidRun(DeletionError, Refused):
    """A run that cannot be started as asked (nothing was written)."""


@dataclass(frozen=True)
class Authority:
    """Who allowed the run: a kind of `AUTHORITY_KINDS` and the id of that instruction, policy version, hold... (None for an operator)."""

    kind: str
    id: int | None = None


@dataclass(frozen=True)
class Scope:
    """What the run covers: one subject (by address) within a controller, a set of tickets, a whole controller, or
    some records of one retention category (`category`, `ticket_ids` then holding the records' ids)."""

    kind: str
    controller_id: int | None = None
    emails: tuple[str, ...] = ()
    ticket_ids: tuple[int, ...] = ()
    # A subject known only by the blind index of their addresses (erased before: their addresses are gone).
    email_digests: tuple[bytes, ...] = ()
    category: str | None = None

    @classmethod
    def subject(cls, controller_id: int, emails: tuple[str, ...], *, email_digests: tuple[bytes, ...] = ()) -> Scope:
        """One subject, known by these addresses (or their blind index under the controller), within one controller."""
        return cls("subject", controller_id, emails=emails, email_digests=email_digests)

    @classmethod
    def tickets(cls, ticket_ids: tuple[int, ...], *, controller_id: int | None = None) -> Scope:
        """These tickets (only those of `controller_id` when given)."""
        return cls("tickets", controller_id, ticket_ids=ticket_ids)

    @classmethod
    def records(cls, category: str, ids: tuple[int, ...], *, controller_id: int | None = None) -> Scope:
        """These records of a category registered in `app.deletion.categories` (`controller_id`: whose they are, None: the desk's)."""
        return cls("records", controller_id, ticket_ids=ids, category=category)

    @classmethod
    def controller(cls, controller_id: int) -> Scope:
        """Every ticket of one controller."""
        return cls("controller", controller_id)


def _cursor_name(run_id: int) -> str:
    return f"deletion.run.{run_id}"


def _check(authority: Authority, scope: Scope, action: str, terms: Mapping[str, str], new_email: str | None) -> None:
    if authority.kind not in AUTHORITY_KINDS:
        raise InvalidRun("unknown authority")
    if scope.kind not in SCOPE_KINDS or action not in ACTIONS:
        raise InvalidRun("unknown scope or action")
    if scope.kind not in SUPPORTED[action]:
        raise InvalidRun(f"{action} is not supported on a {scope.kind} scope")
    if scope.kind in ("subject", "controller") and scope.controller_id is None:
        raise InvalidRun(f"a {scope.kind} scope needs its controller")
    if scope.kind == "subject" and not any(scope.emails) and not scope.email_digests:
        raise InvalidRun("a subject scope needs the subject's address")
    if scope.kind == "tickets" and not scope.ticket_ids:
        raise InvalidRun("a tickets scope needs its tickets")
    if scope.kind == "records" and (not scope.ticket_ids or RECORD_STORES.get(scope.category or "") is None):
        raise InvalidRun("a records scope needs its records and a registered category")
    if action == "rectify" and not (terms or new_email):
        raise InvalidRun("a rectification needs the corrected values")


def start(
    session: Session,
    authority: Authority,
    scope: Scope,
    action: str,
    *,
    terms: Mapping[str, str] | None = None,
    new_email: str | None = None,
    extra: Mapping[str, Any] | None = None,
    by: Principal,
    now: dt.datetime,
) -> DeletionRun:
    """Queue a run (flush only); a worker advances it after the commit. InvalidRun when it cannot be started as asked.

    `terms` maps each of the subject's identifiers to what it becomes (default: its addresses to "[erased]");
    `new_email` is the corrected address of a rectification; `extra` are parameters for the authority's hooks.
    All of them are kept encrypted until the run ends.
    """
    terms = dict(terms or {})
    _check(authority, scope, action, terms, new_email)
    if scope.kind == "subject" and not terms:
        terms = {e: "[erased]" for e in scope.emails if e}
    params: dict[str, Any] = {
        **dict(extra or {}),
        "emails": [e for e in scope.emails if e],
        "email_digests": sorted(d.hex() for d in scope.email_digests),
        "replace": terms,
        "new_email": new_email,
        "ticket_ids": sorted({int(t) for t in scope.ticket_ids}) if scope.kind != "records" else [],
    }
    if scope.kind == "records":
        params.update(category=scope.category, item_ids=sorted({int(i) for i in scope.ticket_ids}))
    run = DeletionRun(
        authority_kind=authority.kind,
        authority_id=authority.id,
        scope_kind=scope.kind,
        controller_id=scope.controller_id,
        action=action,
        state="queued",
        requested_by=by.label[:100],
        key_owner=key_owner_for(scope.controller_id),
        params=json.dumps(params),
        report={},
        created_at=now,
        updated_at=now,
    )
    session.add(run)
    session.flush()
    details = {"authority": authority.kind, "authority_id": authority.id, "scope": scope.kind, "action": action, "tickets": len(params["ticket_ids"])}
    if scope.kind == "records":
        details.update(category=scope.category, items=len(params["item_ids"]))
    record(session, by=by, action="deletion.start", target_type="deletion_run", target_id=run.id, controller_id=run.controller_id, details=details, now=now)
    DOORBELL.ring_after_commit(session, [run.id])
    return run


def get_run(session: Session, run_id: int) -> DeletionRun:
    """One run, or RunNotFound."""
    run = session.get(DeletionRun, run_id)
    if run is None:
        raise RunNotFound(f"no deletion run {run_id}")
    return run


def _claim(session: Session, run_id: int, now: dt.datetime) -> DeletionRun | None:
    """Mark the run running; None when it is finished (or unknown). On Postgres the row stays locked to the commit."""
    claimed = session.execute(
        update(DeletionRun)
        .where(DeletionRun.id == run_id, DeletionRun.state.in_(UNFINISHED))
        .values(state="running", updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        return None
    return session.get(DeletionRun, run_id, populate_existing=True)


def step(session: Session, run_id: int, *, by: Principal, now: dt.datetime) -> bool:
    """Advance a run by one batch (the caller commits); True when it is finished (a finished run is a no-op)."""
    run = _claim(session, run_id, now)
    if run is None:
        return True
    sqlite.secure_delete(session)
    hooks = AUTHORITIES.for_run(session, run)
    stores = stores_for(run, hooks)
    order = phases(stores)
    cursor = get_state(session, _cursor_name(run.id)) or {"phase": "plan", "after": 0}
    ctx = RunContext(session, run, json.loads(run.params or "{}"), cursor, Report(run.report), by, now)
    phase = cursor["phase"]
    if phase == "plan":
        make_plan(ctx, hooks)
        done_phase = True
    else:
        store = stores[order.index(phase) - 1]
        batch = store.select(ctx, int(cursor.get("after", 0)))
        held = HOLDS.kept(session, run, batch.items)
        for item, reason in held.items():
            ctx.report.keep(item, reason)
        store.apply(ctx, [i for i in batch.items if i not in held])
        cursor["after"], done_phase = batch.after, batch.done
    if done_phase:
        cursor["phase"], cursor["after"] = order[order.index(phase) + 1], 0
    run.report = ctx.report.data
    run.updated_at = now
    finished = cursor["phase"] == "done"
    if finished:
        _finish(session, run, by=by, now=now)
    else:
        save_state(session, _cursor_name(run.id), cursor, now=now)
        if phase != "plan":
            _audit(session, run, "deletion.batch", by=by, now=now, phase=phase)
    session.flush()
    hooks.after_batch(session, run, by=by, now=now)
    return finished


def _audit(session: Session, run: DeletionRun, action: str, *, by: Principal, now: dt.datetime, **extra: Any) -> None:
    report = run.report or {}
    details = {**extra, "changed": changes(report), "failed": len(report.get("failed", [])), "kept": len(report.get("kept", []))}
    record(session, by=by, action=action, target_type="deletion_run", target_id=run.id, controller_id=run.controller_id, details=details, now=now)


def _finish(session: Session, run: DeletionRun, *, by: Principal, now: dt.datetime) -> None:
    run.state = "failed" if (run.report or {}).get("failed") else "done"
    run.finished_at = now
    run.params = None
    clear_state(session, _cursor_name(run.id))
    session.flush()
    _audit(session, run, "deletion.finish", by=by, now=now, state=run.state)


def advance(
    sessions: SessionScope,
    run_id: int,
    *,
    by: Principal,
    clock: Clock,
    should_stop: Callable[[], bool] = lambda: False,
    on_batch: Callable[[int], None] = lambda _n: None,
    max_batches: int | None = None,
) -> BatchProgress:
    """Advance a run batch by batch, one committed transaction each (the worker, `resume`); stops between batches when asked.

    A finished run then has the database's own copies cleared (SQLite: the WAL truncated).
    """
    binds: list[Any] = []

    def one(session: Session, now: dt.datetime) -> bool:
        finished = step(session, run_id, by=by, now=now)
        binds.append(session.get_bind())
        return finished

    progress = run_batches(sessions, one, clock=clock, should_stop=should_stop, on_batch=on_batch, max_batches=max_batches)
    if progress.finished and binds:
        bind = binds[-1]
        sqlite.truncate_wal(bind.engine if hasattr(bind, "engine") else bind)
    return progress


@dataclass(frozen=True)
class Progress:
    """Where a run stands: its state, and for an unfinished one the phase and id its cursor is at (None: not started)."""

    state: str
    phase: str | None
    after: int
    changed: dict[str, int]

    def describe(self, label: str) -> str:
        """One line naming the run as `label` (ids and counts only)."""
        changed = ", ".join(f"{k} {v}" for k, v in self.changed.items()) or "nothing yet"
        if self.state not in UNFINISHED:
            return f"{label} {self.state} (changed: {changed})"
        if self.phase is None:
            return f"{label} {self.state}, not started (changed: {changed})"
        return f"{label} {self.state}, phase {self.phase} after id {self.after} (changed so far: {changed})"


def progress(session: Session, run_id: int) -> Progress:
    """Where a run stands (RunNotFound for an unknown id)."""
    item = get_run(session, run_id)
    cursor = get_state(session, _cursor_name(item.id)) if item.state in UNFINISHED else None
    return Progress(item.state, cursor["phase"] if cursor else None, int(cursor.get("after", 0)) if cursor else 0, changes(item.report or {}))


def ring(session: Session, run_ids: list[int]) -> None:
    """Ring the worker for these runs once the session commits."""
    DOORBELL.ring_after_commit(session, run_ids)


def sweep(session: Session, *, now: dt.datetime) -> int:
    """Ring again every unfinished run gone quiet (its doorbell or worker was lost); how many."""
    stale = list(session.scalars(select(DeletionRun.id).where(DeletionRun.state.in_(UNFINISHED), DeletionRun.updated_at < now - STALE_AFTER)))
    ring(session, stale)
    return len(stale)
