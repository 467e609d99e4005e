"""Execution runs under a confirmed controller instruction: start one, advance it, say where it stands, sweep.

Every action checks `app.dsr.gate.require_instruction` for its decision
(export -> provide_data, erase -> erase, rectify -> rectify) and the
controller the instruction came from. A run is a row (the database is the
source of truth): an export is done here in one step by a worker; an
erasure or rectification is a run of the deletion engine (app.deletion)
with authority = the instruction and scope = the subject within the
controller, and the request's hooks (app.subject_data.erasure) keep this
row in step with it. The sweeper re-rings runs gone quiet.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.deletion import service as deletion
from app.deletion.rewrite import subject_emails, terms_of
from app.dsr.history import add_event
from app.jobs.batch import Clock, SessionScope, run_batches
from app.jobs.doorbell import Doorbell
from app.principal import Principal
from app.subject_data import export
from app.subject_data.aftercare import marked
from app.subject_data.authority import instruction_for, request
from app.subject_data.erasure import ACTION_FOR, AUTHORITY
from app.subject_data.errors import InvalidRequest, RunNotFound
from app.subject_data.find import Found, find
from app.subject_data.models import DownloadToken, SubjectRun

log = logging.getLogger(__name__)

RUN_ACTOR = "run_subject_job"
# A run not advanced for this long lost its doorbell or its worker: the sweeper rings again.
STALE_AFTER = dt.timedelta(minutes=2)
_RUN_DOORBELL = Doorbell(
    RUN_ACTOR,
    key="subject_data_doorbells",
    log=log,
    broker_down="subject data: broker unavailable (%s); the sweeper will advance run %s",
    no_actor="subject data: no %s actor declared; the sweeper will advance %d run(s)",
)
_UNFINISHED = ("queued", "running")


def find_for(session: Session, dsr_id: int, controller_id: int) -> Found:
    """The subject's data at one controller of the request (counts before anything is done)."""
    return find(session, request(session, dsr_id), controller_id)


def _corrections(subject_email: str, subject_name: str | None, new_name: str | None, new_email: str | None) -> tuple[dict[str, str], str | None, str | None]:
    """A rectification's replacements (old value -> corrected one), corrected address and name; InvalidRequest when unusable."""
    name, address = (new_name or "").strip(), (new_email or "").strip()
    if not name and not address:
        raise InvalidRequest("give the corrected name or email")
    if address and ("@" not in address or len(address) > 320):
        raise InvalidRequest("the corrected email is not an email address")
    replace = {}
    if address:
        replace[subject_email] = address
    if name and subject_name:
        replace[subject_name] = name
    return replace, address or None, name or None


def start(
    session: Session,
    dsr_id: int,
    controller_id: int,
    kind: str,
    *,
    new_name: str | None = None,
    new_email: str | None = None,
    by: Principal,
    now: dt.datetime,
) -> SubjectRun:
    """Queue an export, erasure or rectification of the subject's data at one controller, under its confirmed instruction."""
    if kind not in ("export", "erase", "rectify"):
        raise InvalidRequest("unknown action")
    dsr = request(session, dsr_id)
    if not dsr.is_open:
        raise InvalidRequest("the request is closed")
    if controller_id not in dsr.controller_ids:
        raise InvalidRequest("the request does not concern that controller")
    instruction_id = instruction_for(session, dsr_id, kind, controller_id)
    email = dsr.subject_email
    marks = marked(session, dsr_id, controller_id) if kind == "erase" else []
    if not email and not marks:
        raise InvalidRequest("the request has no subject email to find the subject's data by")
    busy = session.scalar(
        select(SubjectRun.id).where(SubjectRun.dsr_id == dsr_id, SubjectRun.controller_id == controller_id, SubjectRun.state.in_(_UNFINISHED))
    )
    if busy is not None:
        raise InvalidRequest(f"run {busy} of this request is still working")
    engine_run = None
    if kind in ACTION_FOR:
        if kind == "erase":
            terms, address, name = {t: "[erased]" for t in terms_of(email, dsr.subject_name, dsr.subject_identifiers)}, None, None
        else:
            assert email is not None
            terms, address, name = _corrections(email, dsr.subject_name, new_name, new_email)
        emails = subject_emails(email, dsr.subject_identifiers) if email else ()
        if kind == "erase":
            terms.update({e: "[erased]" for e in emails})
        engine_run = deletion.start(
            session,
            deletion.Authority(AUTHORITY, instruction_id),
            deletion.Scope.subject(controller_id, emails, email_digests=tuple(marks)),
            ACTION_FOR[kind],
            terms=terms,
            new_email=address,
            extra={"new_name": name, "names": [dsr.subject_name] if dsr.subject_name else []},
            by=by,
            now=now,
        )
    run = SubjectRun(
        dsr_id=dsr_id,
        controller_id=controller_id,
        kind=kind,
        state="queued",
        instruction_id=instruction_id,
        requested_by=by.id,
        key_owner=controller_id,
        params=json.dumps({"email": email}) if engine_run is None else None,
        deletion_run_id=engine_run.id if engine_run is not None else None,
        report={},
        created_at=now,
        updated_at=now,
    )
    session.add(run)
    session.flush()
    add_event(session, dsr, f"{kind}_started", by=by, now=now, run_id=run.id, controller_id=controller_id, instruction_id=instruction_id)
    if engine_run is None:
        _RUN_DOORBELL.ring_after_commit(session, [run.id])
    return run


def get_run(session: Session, run_id: int) -> SubjectRun:
    """One run, or RunNotFound."""
    run = session.get(SubjectRun, run_id)
    if run is None:
        raise RunNotFound(f"no run {run_id}")
    return run


def step(session: Session, run_id: int, *, by: Principal, now: dt.datetime) -> bool:
    """Advance a run by one batch (the caller commits); True when it is finished (a finished or unknown run: True)."""
    run = session.get(SubjectRun, run_id)
    if run is not None and run.deletion_run_id is not None:
        return deletion.step(session, run.deletion_run_id, by=by, now=now)
    claimed = session.execute(
        update(SubjectRun)
        .where(SubjectRun.id == run_id, SubjectRun.state.in_(_UNFINISHED))
        .values(state="running", updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        return True
    run = session.get(SubjectRun, run_id, populate_existing=True)
    assert run is not None
    made = export.generate(session, run, now=now)
    run.state = "failed" if run.report.get("failed") else "done"
    run.finished_at = run.updated_at = now
    run.params = None
    session.flush()
    dsr = request(session, run.dsr_id)
    add_event(
        session, dsr, f"export_{run.state}", by=by, now=now, run_id=run.id, controller_id=run.controller_id, exports=len(made), **run.report.get("counts", {})
    )
    return True


def run_to_end(
    sessions: SessionScope,
    run_id: int,
    *,
    by: Principal,
    clock: Clock,
    max_steps: int | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_step: Callable[[], None] = lambda: None,
) -> bool:
    """Advance a run batch by batch, one committed transaction each (the worker, `subject-data resume`); True when finished.

    `on_step` is called after each committed batch, then `should_stop` is asked: when it says so the run
    stops there (False), its cursor saved for the next resume.
    """
    with sessions() as session:
        engine_run_id = get_run(session, run_id).deletion_run_id
    if engine_run_id is not None:
        progress = deletion.advance(sessions, engine_run_id, by=by, clock=clock, should_stop=should_stop, on_batch=lambda _n: on_step(), max_batches=max_steps)
    else:
        progress = run_batches(
            sessions, lambda s, now: step(s, run_id, by=by, now=now), clock=clock, should_stop=should_stop, on_batch=lambda _n: on_step(), max_batches=max_steps
        )
    return progress.finished


def describe_progress(session: Session, run_id: int) -> str:
    """Where a run stands: its state, or for an unfinished one its phase and cursor and what it changed so far (ids and counts only)."""
    run = get_run(session, run_id)
    if run.deletion_run_id is not None:
        return deletion.progress(session, run.deletion_run_id).describe(run.kind)
    changed = dict(sorted((run.report or {}).get("changed", {}).items()))
    return deletion.Progress(run.state, None, 0, changed).describe(run.kind)


def sweep(session: Session, *, now: dt.datetime) -> dict[str, int]:
    """Re-ring unfinished runs gone quiet (exports here, erasures and rectifications on the engine); delete expired export files and spent tokens."""
    stale = list(
        session.execute(select(SubjectRun.id, SubjectRun.deletion_run_id).where(SubjectRun.state.in_(_UNFINISHED), SubjectRun.updated_at < now - STALE_AFTER))
    )
    _RUN_DOORBELL.ring_after_commit(session, [r.id for r in stale if r.deletion_run_id is None])
    deletion.ring(session, [r.deletion_run_id for r in stale if r.deletion_run_id is not None])
    expired = export.expire(session, now=now)
    tokens = session.execute(delete(DownloadToken).where(DownloadToken.expires_at < now - dt.timedelta(hours=1)))
    return {"rung": len(stale), "exports_deleted": expired, "tokens_deleted": int(getattr(tokens, "rowcount", 0) or 0)}
