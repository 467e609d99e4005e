"""A retention run: what is due per category and controller goes through the deletion engine, recorded in the ledger.

The run is a `retention_runs` row and a cursor on it; every batch is one committed transaction
(`app.jobs.batch.run_batches`), so Ctrl-C stops between batches and `kill -9` loses at most the batch in
flight: the next run resumes the unfinished ledger row where its cursor stands (the engine run in flight
resumes from its own cursor, so nothing is done twice). A batch either starts an engine run for the next
`CHUNK` due items of one (category, owner) under the policy version in force at that moment
(authority "retention_policy", id = the version's row id), or advances the engine run in flight by one of
its batches. Every item passes the engine's hold check; what a hold kept is counted under "held", what was
acted on under "deleted" or "anonymised" (the policy's action), and every row and file changed under "changed".

Categories a run acts on: those with `covered` in `app.retention.periods`, each reached through its
`app.retention.categories.Dispatch` (whole tickets, or a record store registered on the engine). An owner
None is the desk: triage tickets, and records of no controller (staff data, quarantined mail).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from app.audit.service import record
from app.deletion import service as deletion
from app.deletion.holds import HOLDS
from app.deletion.models import DeletionRun
from app.deletion.report import changes
from app.jobs.batch import BatchProgress, Clock, SessionScope, run_batches
from app.principal import Principal
from app.retention import release
from app.retention.categories import Dispatch, controllers_with_tickets, dispatch
from app.retention.models import RetentionHold, RetentionRun
from app.retention.periods import DEFAULTS
from app.retention.policies import InvalidPolicy, effective

__all__ = ["CHUNK", "controllers_with_tickets", "covered", "execute", "ledger", "preview", "step"]

# Items per engine run (its plan keeps their ids): tickets are one engine batch of up to 5,000 (app.deletion.purge.BATCH),
# records 200 a batch (app.deletion.categories). Fewer, larger runs keep the per-run costs (start, plan, audit) small.
CHUNK = 5000
UNFINISHED = ("running", "stopped")


def covered(only_category: str | None = None) -> list[str]:
    """The categories a run acts on (optionally just one); InvalidPolicy (a refusal) for an unknown or uncovered name."""
    if only_category is not None:
        if only_category not in DEFAULTS:
            raise InvalidPolicy(f"unknown category {only_category!r} (known: {', '.join(DEFAULTS)})")
        if not DEFAULTS[only_category].covered:
            raise InvalidPolicy(f"{only_category} is not covered by retention runs yet (see docs/retention.md)")
        wanted = [only_category]
    else:
        wanted = [c for c, d in DEFAULTS.items() if d.covered]
    missing = [c for c in wanted if dispatch(c) is None]
    if missing:
        raise InvalidPolicy(f"no store is registered for {', '.join(missing)} (the app was created without its domain's setup)")
    return wanted


def _dispatch(category: str) -> Dispatch:
    found = dispatch(category)
    if found is None:
        raise InvalidPolicy(f"no store is registered for {category}")
    return found


def _key(cid: int | None) -> str:
    return "*" if cid is None else str(cid)


# ---- dry run ----------------------------------------------------------------------------------------------


@dataclass
class PreviewLine:
    """What a run would do to one category at one owner now: due count, held count with reasons.

    `unit` names the items ("ticket(s)", "ended session(s)"); `owner` is the controller's id or, for None, the
    desk's label ("triage" for tickets, "desk" for records of no controller)."""

    category: str
    controller_id: int | None
    action: str
    period_days: int
    version: int
    source: str
    unit: str = "ticket(s)"
    desk_label: str = "triage"
    due: int = 0
    held: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON shape (ids, counts and reason codes only)."""
        keys = ("category", "controller_id", "action", "period_days", "version", "source", "unit", "due", "held")
        return {k: getattr(self, k) for k in keys}


def preview(session: Session, *, only_controller: int | None = None, only_category: str | None = None, now: dt.datetime) -> list[PreviewLine]:
    """What a run would delete or anonymise now, and what legal holds would keep (changes nothing)."""
    lines: list[PreviewLine] = []
    # Without a hold in force nothing is kept: the stores need not find what holds key on (quarantine reads originals).
    in_force = session.scalar(
        select(RetentionHold.id).where(RetentionHold.lifted_at.is_(None), or_(RetentionHold.until.is_(None), RetentionHold.until > now)).limit(1)
    )
    for category in covered(only_category):
        route = _dispatch(category)
        for cid in route.owners(session, only_controller):
            policy = effective(session, category, cid, now=now)
            line = PreviewLine(category, cid, policy.action, policy.period_days, policy.version, policy.source, route.unit, route.desk_label)
            probe = DeletionRun(authority_kind="retention_policy", scope_kind=route.scope_kind, controller_id=cid, action=policy.action, updated_at=now)
            after = 0
            while items := route.due(session, policy, now, after, CHUNK, in_force is not None):
                kept = HOLDS.kept(session, probe, items)
                line.due += len(items) - len(kept)
                for why in kept.values():
                    line.held[why] = line.held.get(why, 0) + 1
                after = items[-1].id
            lines.append(line)
    return lines


# ---- the real run -----------------------------------------------------------------------------------------


def open_run(
    session: Session, *, only_controller: int | None, only_category: str | None, chunk: int = CHUNK, by: Principal, now: dt.datetime
) -> tuple[RetentionRun, bool]:
    """The unfinished ledger row to resume (True), or a new one for these filters (False). Flush only; audited when new."""
    unfinished = session.scalars(select(RetentionRun).where(RetentionRun.state.in_(UNFINISHED)).order_by(RetentionRun.id.desc()).limit(1)).first()
    if unfinished is not None:
        unfinished.state = "running"
        return unfinished, True
    categories = covered(only_category)
    work = [[c, cid] for c in categories for cid in _dispatch(c).owners(session, only_controller)]
    run = RetentionRun(
        state="running",
        requested_by=by.label[:100],
        only_controller_id=only_controller,
        only_category=only_category,
        policy_versions={},
        counts={},
        errors=[],
        cursor={"work": work, "i": 0, "after": 0, "engine_run": None, "chunk": chunk},
        started_at=now,
        updated_at=now,
    )
    session.add(run)
    session.flush()
    details = {"category": only_category, "only_controller": only_controller, "parts": len(work)}
    record(session, by=by, action="retention.run_started", target_type="retention_run", target_id=run.id, details=details, now=now)
    return run, False


def _tally(run: RetentionRun, category: str, cid: int | None, what: str, n: int) -> None:
    counts = run.counts.setdefault(category, {}).setdefault(_key(cid), {"due": 0, "changed": 0, "held": 0})
    if what in ("deleted", "anonymised"):
        counts.setdefault(what, 0)
    counts[what] = int(counts.get(what, 0)) + n
    flag_modified(run, "counts")


def _held_by(run: RetentionRun, category: str, cid: int | None, kept: list[dict[str, Any]]) -> None:
    """What each hold kept, by its reason ("hold 8: accounting": n), beside the total under "held"."""
    if not kept:
        return
    per = run.counts.setdefault(category, {}).setdefault(_key(cid), {"due": 0, "changed": 0, "held": 0}).setdefault("held_by", {})
    for item in kept:
        why = str(item.get("reason") or "kept")
        per[why] = int(per.get(why, 0)) + 1
    flag_modified(run, "counts")


def _settle(session: Session, run: RetentionRun, engine_run_id: int, category: str, cid: int | None) -> None:
    """An engine run finished: its changes, kept items and failures into the ledger (same transaction)."""
    done = deletion.get_run(session, engine_run_id)
    report = done.report or {}
    planned = report.get("planned") or {}
    items = int(planned.get("items", planned.get("tickets", 0)))
    failed = {(f["what"], f["id"]) for f in report.get("failed", []) if f["what"] == _dispatch(category).what}
    _tally(run, category, cid, "deleted" if done.action == "delete" else "anonymised", max(items - len(report.get("kept", [])) - len(failed), 0))
    _tally(run, category, cid, "changed", sum(changes(report).values()))
    _tally(run, category, cid, "held", len(report.get("kept", [])))
    _held_by(run, category, cid, report.get("kept", []))
    for failure in report.get("failed", []):
        run.errors = [*run.errors, {"engine_run": engine_run_id, **failure}]


def step(session: Session, run_id: int, *, by: Principal, now: dt.datetime) -> bool:
    """One batch of a retention run (the caller commits); True when the run is finished."""
    run = session.get(RetentionRun, run_id, populate_existing=True)
    if run is None or run.state not in UNFINISHED:
        return True
    cursor = dict(run.cursor)
    work = cursor["work"]
    if cursor["i"] >= len(work):
        _finish(session, run, by=by, now=now)
        return True
    category, cid = work[cursor["i"]]
    engine_run = cursor.get("engine_run")
    if engine_run is not None:
        if deletion.step(session, int(engine_run), by=by, now=now):
            _settle(session, run, int(engine_run), category, cid)
            cursor["engine_run"] = None
    else:
        policy = effective(session, category, cid, now=now, materialise=True)
        versions = run.policy_versions.setdefault(category, {}).setdefault(_key(cid), [])
        if policy.version_id not in versions:
            versions.append(policy.version_id)  # a change mid-run: the next chunk follows the new version
            flag_modified(run, "policy_versions")
        route = _dispatch(category)
        # Only the ids go to the engine, which finds each batch again (with what holds key on) before its hold check.
        batch = route.due(session, policy, now, int(cursor["after"]), int(cursor.get("chunk") or CHUNK), False)
        if batch:
            authority = deletion.Authority("retention_policy", policy.version_id)
            started = deletion.start(session, authority, route.scope(batch, cid), policy.action, by=by, now=now)
            cursor["engine_run"], cursor["after"] = started.id, batch[-1].id
            _tally(run, category, cid, "due", len(batch))
        else:
            cursor["i"], cursor["after"] = cursor["i"] + 1, 0
    run.cursor, run.updated_at = cursor, now
    session.flush()
    return False


def _finish(session: Session, run: RetentionRun, *, by: Principal, now: dt.datetime) -> None:
    run.state = "failed" if run.errors else "done"
    run.finished_at = run.updated_at = now
    session.flush()
    totals = {"due": 0, "deleted": 0, "anonymised": 0, "changed": 0, "held": 0}
    for per_controller in run.counts.values():
        for counts in per_controller.values():
            for what in totals:
                totals[what] += int(counts.get(what, 0))
    details = {"state": run.state, **totals, "errors": len(run.errors)}
    record(session, by=by, action="retention.run_finished", target_type="retention_run", target_id=run.id, details=details, now=now)


def stop(session: Session, run_id: int, *, now: dt.datetime) -> None:
    """Mark an interrupted run stopped (the next run resumes it)."""
    run = session.get(RetentionRun, run_id)
    if run is not None and run.state == "running":
        run.state, run.updated_at = "stopped", now
        session.flush()


@dataclass(frozen=True)
class RunResult:
    """How a run ended: its ledger id, whether it resumed an unfinished one, and the batch loop's progress."""

    run_id: int
    resumed: bool
    progress: BatchProgress


def execute(
    sessions: SessionScope,
    *,
    only_controller: int | None = None,
    only_category: str | None = None,
    chunk: int = CHUNK,
    by: Principal,
    clock: Clock,
    should_stop: Callable[[], bool] = lambda: False,
    on_batch: Callable[[int], None] = lambda _n: None,
    max_batches: int | None = None,
) -> RunResult:
    """Open (or resume) a ledger row and run it batch by batch; a stop leaves it 'stopped' for the next run.

    `chunk`: tickets per engine run (a resumed run keeps its own).
    The caller holds the cross-process lock (`retention run` and the scheduled job take the same one).
    """
    with sessions() as session:
        run, resumed = open_run(session, only_controller=only_controller, only_category=only_category, chunk=chunk, by=by, now=clock())
        run_id = run.id
    release.run_due(sessions, run_id, by=by, clock=clock, should_stop=should_stop, on_batch=on_batch)  # what ended holds kept (DSR erasures...)
    progress = run_batches(
        sessions, lambda s, now: step(s, run_id, by=by, now=now), clock=clock, should_stop=should_stop, on_batch=on_batch, max_batches=max_batches
    )
    if progress.stopped:
        with sessions() as session:
            stop(session, run_id, now=clock())
    return RunResult(run_id, resumed, progress)


def ledger(session: Session, *, limit: int = 50) -> list[RetentionRun]:
    """The newest runs first."""
    return list(session.scalars(select(RetentionRun).order_by(RetentionRun.id.desc()).limit(limit)))


def describe(run: RetentionRun) -> dict[str, Any]:
    """A ledger row as JSON (ids, counts and codes only)."""
    return {
        "id": run.id,
        "state": run.state,
        "requested_by": run.requested_by,
        "only_controller_id": run.only_controller_id,
        "only_category": run.only_category,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "policy_versions": run.policy_versions,
        "counts": run.counts,
        "errors": run.errors,
    }
