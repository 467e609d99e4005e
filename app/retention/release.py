"""When a legal hold ends, what it kept from a DSR erasure (or a termination) is taken by the next retention run.

A retention run's own items need nothing: once the hold ends they are simply due again. A run of any other
authority (an erasure under a controller's instruction, a termination, a release of one of those) kept items
under a hold and finished; that deletion is still owed. So every retention run (`retention run`, the daily job)
starts, before its categories, a run of the engine under the authority `hold_release` (id = the run whose kept
items it takes, its *source*) for each finished source that kept items under a hold no longer in force (lifted,
or its end date passed) and was not released yet. The release acts for the authority at the root of its chain
of sources (`app.deletion.authorities.origin`): a DSR erasure's release is still the controller's instruction at
work, with the request's own records, history and notice to the controller (the domain's `release` hook starts
it: only the request knows the subject again). A source without such a hook is re-run on its tickets or its
controller. Every item passes the engine's hold check again, so what another hold still covers stays kept, and
the release is then itself a source once that hold ends.

Each release is audit-logged (`retention.hold_release`: source run, holds, kept count, ledger row) and counted in
the retention run's ledger under `hold_release` (due: items the ended holds kept; deleted: those the release took;
changed: rows and files; held: kept again). The
engine runs are advanced batch by batch, one committed transaction each, and the ledger row keeps which releases
it started and which it has counted (`cursor["releases"]`, `cursor["settled"]`), so Ctrl-C or `kill -9` mid
release loses at most one batch and the next run resumes it: nothing is released or counted twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from app.audit.service import record
from app.deletion import service as deletion
from app.deletion.authorities import AUTHORITIES, RELEASE
from app.deletion.models import DeletionRun
from app.deletion.report import changes
from app.jobs.batch import BatchProgress, Clock, SessionScope, run_batches
from app.principal import Principal
from app.retention.holds import hold_id_of
from app.retention.models import RetentionHold, RetentionRun
from app.tickets.models import Message

log = logging.getLogger(__name__)

# The ledger's name for releases among its categories.
LEDGER_KEY = "hold_release"
# Runs whose kept items are owed when their hold ends (retention's own items are simply due again).
SOURCES = ("instruction", "termination", RELEASE)
# Deletions only: a rectification's corrected values are gone once it finished.
ACTIONS = ("redact", "delete", "anonymise")
FINISHED = ("done", "failed")


@dataclass(frozen=True)
class Due:
    """A finished run whose kept items are owed now: its id, controller, the ended holds and how many items they kept."""

    source_id: int
    controller_id: int | None
    hold_ids: tuple[int, ...]
    items: int

    def as_dict(self) -> dict[str, Any]:
        """The dry run's JSON line (ids and counts): category "hold_release", the source run, the ended holds, items due."""
        return {"category": LEDGER_KEY, "controller_id": self.controller_id, "source_run": self.source_id, "holds": list(self.hold_ids), "due": self.items}

    def describe(self) -> str:
        """The dry run's line: what the next run would release, and why."""
        ended = ", ".join(str(h) for h in self.hold_ids)
        who = "triage" if self.controller_id is None else f"controller {self.controller_id}"
        return f"{LEDGER_KEY}\t{who}\twould take {self.items} item(s) deletion run {self.source_id} kept under ended hold(s) {ended}"


def due(session: Session, *, only_controller: int | None = None, now: dt.datetime) -> list[Due]:
    """The sources to release now, oldest first (changes nothing; `retention run --dry-run` shows them)."""
    released = select(DeletionRun.authority_id).where(DeletionRun.authority_kind == RELEASE, DeletionRun.authority_id.is_not(None))
    stmt = (
        select(DeletionRun.id, DeletionRun.controller_id, DeletionRun.report)
        .where(DeletionRun.authority_kind.in_(SOURCES), DeletionRun.action.in_(ACTIONS), DeletionRun.state.in_(FINISHED), DeletionRun.id.not_in(released))
        .order_by(DeletionRun.id)
    )
    if only_controller is not None:
        stmt = stmt.where(DeletionRun.controller_id == only_controller)
    kept_by_run: dict[int, tuple[int | None, dict[int, int]]] = {}
    for row in session.execute(stmt):
        per_hold: dict[int, int] = {}
        for entry in (row.report or {}).get("kept") or []:
            hold_id = hold_id_of(str(entry.get("reason", "")))
            if hold_id is not None:
                per_hold[hold_id] = per_hold.get(hold_id, 0) + 1
        if per_hold:
            kept_by_run[row.id] = (row.controller_id, per_hold)
    wanted = sorted({h for _, per in kept_by_run.values() for h in per})
    holds = {h.id: h for h in session.scalars(select(RetentionHold).where(RetentionHold.id.in_(wanted or [0])))}
    found = []
    for run_id, (controller_id, per_hold) in kept_by_run.items():
        # A reason naming no hold of ours (another check's) never releases anything.
        ended = tuple(sorted(h for h in per_hold if h in holds and not holds[h].active(now)))
        if ended:
            found.append(Due(run_id, controller_id, ended, sum(per_hold[h] for h in ended)))
    return found


def _kept_tickets(session: Session, source: DeletionRun) -> tuple[int, ...]:
    """The tickets of the items a run kept (a ticket, or the ticket of a message)."""
    kept = (source.report or {}).get("kept") or []
    tickets = {int(k["id"]) for k in kept if k.get("what") == "ticket"}
    messages = [int(k["id"]) for k in kept if k.get("what") == "message"]
    tickets |= set(session.scalars(select(Message.ticket_id).where(Message.id.in_(messages or [0]))))
    return tuple(sorted(tickets))


def _rerun(session: Session, source: DeletionRun, *, by: Principal, now: dt.datetime) -> DeletionRun | None:
    """A source whose domain has no release hook: its kept tickets, or its whole controller, again (None: a subject scope)."""
    authority = deletion.Authority(RELEASE, source.id)
    if source.scope_kind == "controller" and source.controller_id is not None:
        return deletion.start(session, authority, deletion.Scope.controller(source.controller_id), source.action, by=by, now=now)
    if source.scope_kind == "tickets":
        tickets = _kept_tickets(session, source)
        if tickets:
            return deletion.start(session, authority, deletion.Scope.tickets(tickets, controller_id=source.controller_id), source.action, by=by, now=now)
    return None


def _tally(ledger: RetentionRun, controller_id: int | None, what: str, n: int) -> None:
    key = "*" if controller_id is None else str(controller_id)
    counts = ledger.counts.setdefault(LEDGER_KEY, {}).setdefault(key, {"due": 0, "deleted": 0, "changed": 0, "held": 0})
    counts[what] = int(counts.get(what, 0)) + n
    flag_modified(ledger, "counts")


def start_due(session: Session, ledger_id: int, *, by: Principal, now: dt.datetime) -> list[int]:
    """Start a release run for every source due now (flush; audited); the engine runs' ids, also kept on the ledger row.

    A retention run filtered to one category starts none (a release is not a category); one filtered to a
    controller releases only that controller's sources.
    """
    ledger = session.get(RetentionRun, ledger_id)
    if ledger is None or ledger.only_category is not None:
        return []
    started: dict[str, int] = {}
    for item in due(session, only_controller=ledger.only_controller_id, now=now):
        source = session.get(DeletionRun, item.source_id)
        assert source is not None
        run = AUTHORITIES.for_run(session, source).release(session, source, by=by, now=now) or _rerun(session, source, by=by, now=now)
        if run is None:
            log.warning("retention: run %s kept items under ended hold(s) %s but cannot be released", source.id, list(item.hold_ids))
            continue
        details = {"source_run": source.id, "holds": list(item.hold_ids), "kept": item.items, "retention_run": ledger.id}
        who = source.controller_id
        record(session, by=by, action="retention.hold_release", target_type="deletion_run", target_id=run.id, controller_id=who, details=details, now=now)
        _tally(ledger, source.controller_id, "due", item.items)
        started[str(run.id)] = item.items
    if started:
        cursor = ledger.cursor
        ids = [int(i) for i in started]
        ledger.cursor = {**cursor, "releases": [*cursor.get("releases", []), *ids], "release_due": {**cursor.get("release_due", {}), **started}}
        session.flush()
    return [int(i) for i in started]


def _settle(ledger: RetentionRun, run: DeletionRun) -> None:
    """A finished release into the ledger (same transaction): the items it took ("deleted": what the ended holds kept,
    less what it kept again), the rows and files it changed, what it kept again, what failed."""
    report = run.report or {}
    held = len(report.get("kept", []))
    _tally(ledger, run.controller_id, "deleted", max(0, int(ledger.cursor.get("release_due", {}).get(str(run.id), 0)) - held))
    _tally(ledger, run.controller_id, "changed", sum(changes(report).values()))
    _tally(ledger, run.controller_id, "held", held)
    for failure in report.get("failed", []):
        ledger.errors = [*ledger.errors, {"engine_run": run.id, **failure}]


def step(session: Session, ledger_id: int, *, by: Principal, now: dt.datetime) -> bool:
    """One batch of the ledger row's releases (the caller commits); True when every one is finished and counted."""
    ledger = session.get(RetentionRun, ledger_id, populate_existing=True)
    if ledger is None:
        return True
    cursor = dict(ledger.cursor)
    settled = list(cursor.get("settled", []))
    try:
        for run_id in cursor.get("releases", []):
            if run_id in settled:
                continue
            run = session.get(DeletionRun, run_id)
            if run is not None and not run.is_finished and not deletion.step(session, run_id, by=by, now=now):
                return False
            if run is not None:
                _settle(ledger, run)
            settled.append(run_id)
            return False
        return True
    finally:
        ledger.cursor, ledger.updated_at = {**cursor, "settled": settled}, now
        session.flush()


def run_due(
    sessions: SessionScope,
    ledger_id: int,
    *,
    by: Principal,
    clock: Clock,
    should_stop: Callable[[], bool] = lambda: False,
    on_batch: Callable[[int], None] = lambda _n: None,
) -> BatchProgress:
    """Start the releases due now on this ledger row, then advance them (and any left by a stopped run) to the end.

    Called by `app.retention.runner.execute` at the start of every run, under the run's cross-process lock.
    """
    with sessions() as session:
        start_due(session, ledger_id, by=by, now=clock())
    return run_batches(sessions, lambda s, now: step(s, ledger_id, by=by, now=now), clock=clock, should_stop=should_stop, on_batch=on_batch)
