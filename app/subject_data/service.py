"""Execution under a confirmed controller instruction: start a run, advance it, close the request with a notice.

Every action checks `app.dsr.gate.require_instruction` for its decision
(export -> provide_data, erase -> erase, rectify -> rectify, restrict ->
restrict) and the controller the instruction came from. A run is a row (the
database is the source of truth); a worker advances it batch by batch, each
batch committed with its cursor, and the sweeper re-rings unfinished runs.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.audit.service import record
from app.blobs.store import delete_blob
from app.controllers.models import Controller
from app.dsr import service as dsr_service
from app.dsr.gate import NoConfirmedInstruction, require_instruction
from app.dsr.models import Dsr
from app.jobs.doorbell import Doorbell
from app.jobs.service import clear_state, get_state, save_state
from app.mail.outbound import enqueue_email
from app.principal import Principal
from app.subject_data import erase, export
from app.subject_data import restrict as restriction
from app.subject_data.find import Found, NotConcerned, find
from app.subject_data.models import DECISION_FOR, DownloadToken, SubjectExport, SubjectRun
from app.subject_data.rewrite import terms_of

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


class SubjectDataError(Exception):
    """Base of the execution service's errors; messages are safe to show."""


class NotAuthorised(SubjectDataError):
    """No confirmed instruction of the right kind from that controller."""


class InvalidRequest(SubjectDataError, ValueError):
    """Refused input (nothing changed)."""


class RunNotFound(SubjectDataError):
    """No run with that id."""


def _cursor_name(run_id: int) -> str:
    return f"subject_data.run.{run_id}"


def authority(session: Session, dsr_id: int, action: str, controller_id: int) -> int:
    """The id of the confirmed instruction allowing `action` on this request for this controller, or NotAuthorised."""
    decision = DECISION_FOR[action]
    try:
        return require_instruction(session, dsr_id, decision, controller_id=controller_id).instruction_id
    except NoConfirmedInstruction:
        raise NotAuthorised(f"no confirmed instruction of this controller to {decision.replace('_', ' ')}") from None


def _dsr(session: Session, dsr_id: int) -> Dsr:
    try:
        return dsr_service.get_dsr(session, dsr_id)
    except dsr_service.DsrNotFound:
        raise RunNotFound(f"no DSR {dsr_id}") from None


def find_for(session: Session, dsr_id: int, controller_id: int) -> Found:
    """The subject's data at one controller of the request (counts before anything is done)."""
    try:
        return find(session, _dsr(session, dsr_id), controller_id)
    except NotConcerned as exc:
        raise InvalidRequest(str(exc)) from None


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
    dsr = _dsr(session, dsr_id)
    if not dsr.is_open:
        raise InvalidRequest("the request is closed")
    if controller_id not in dsr.controller_ids:
        raise InvalidRequest("the request does not concern that controller")
    instruction_id = authority(session, dsr_id, kind, controller_id)
    email = dsr.subject_email
    if not email:
        raise InvalidRequest("the request has no subject email to find the subject's data by")
    busy = session.scalar(
        select(SubjectRun.id).where(SubjectRun.dsr_id == dsr_id, SubjectRun.controller_id == controller_id, SubjectRun.state.in_(("queued", "running")))
    )
    if busy is not None:
        raise InvalidRequest(f"run {busy} of this request is still working")
    params: dict[str, Any] = {"email": email}
    if kind == "erase":
        params = erase.params_for_erase(email, terms_of(email, dsr.subject_name, dsr.subject_identifiers))
    elif kind == "rectify":
        name, address = (new_name or "").strip(), (new_email or "").strip()
        if not name and not address:
            raise InvalidRequest("give the corrected name or email")
        if address and ("@" not in address or len(address) > 320):
            raise InvalidRequest("the corrected email is not an email address")
        replace = {}
        if address:
            replace[email] = address
        if name and dsr.subject_name:
            replace[dsr.subject_name] = name
        params = {"email": email, "new_email": address or None, "new_name": name or None, "replace": replace}
    run = SubjectRun(
        dsr_id=dsr_id,
        controller_id=controller_id,
        kind=kind,
        state="queued",
        instruction_id=instruction_id,
        requested_by=by.id,
        key_owner=controller_id,
        params=json.dumps(params),
        report={},
        created_at=now,
        updated_at=now,
    )
    session.add(run)
    session.flush()
    dsr_service.add_event(session, dsr, f"{kind}_started", by=by, now=now, run_id=run.id, controller_id=controller_id, instruction_id=instruction_id)
    _RUN_DOORBELL.ring_after_commit(session, [run.id])
    return run


def get_run(session: Session, run_id: int) -> SubjectRun:
    """One run, or RunNotFound."""
    run = session.get(SubjectRun, run_id)
    if run is None:
        raise RunNotFound(f"no run {run_id}")
    return run


def step(session: Session, run_id: int, *, by: Principal, now: dt.datetime) -> bool:
    """Advance a run by one batch (the caller commits); True when it is finished."""
    claimed = session.execute(
        update(SubjectRun)
        .where(SubjectRun.id == run_id, SubjectRun.state.in_(("queued", "running")))
        .values(state="running", updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        return True
    run = session.get(SubjectRun, run_id, populate_existing=True)
    assert run is not None
    if run.kind == "export":
        made = export.generate(session, run, now=now)
        _finish(session, run, by=by, now=now, details={"exports": len(made), **run.report.get("counts", {})})
        return True
    erase.secure_delete(session)
    params = erase.describe(run.params)
    cursor = get_state(session, _cursor_name(run.id)) or {"phase": "plan", "after": 0}
    report: dict[str, Any] = json.loads(json.dumps(run.report or {}))
    phase = cursor["phase"]
    done_phase = True
    if phase == "plan":
        erase.plan(session, run, params, cursor, report)
    elif phase == "messages":
        done_phase = erase.messages(session, run, params, cursor, report)
    elif phase == "tickets":
        erase.tickets(session, run, params, cursor, report)
    elif phase == "references":
        erase.references(session, run, params, cursor, report, now=now)
    elif phase == "quarantine":
        done_phase = erase.held_quarantine(session, run, params, cursor, report, by=by, now=now)
    elif phase == "finalize":
        erase.finalize(session, run, params, cursor, report)
    if done_phase:
        cursor["phase"], cursor["after"] = erase.PHASES[erase.PHASES.index(phase) + 1], 0
    run.report = report
    run.updated_at = now
    if cursor["phase"] == "done":
        run.params = None
        clear_state(session, _cursor_name(run.id))
        _finish(session, run, by=by, now=now, details={**report.get("changed", {}), "failed": len(report.get("failed", []))})
        return True
    save_state(session, _cursor_name(run.id), cursor, now=now)
    session.flush()
    if phase in ("messages", "tickets", "references", "quarantine"):
        record(
            session,
            by=by,
            action=f"subject_data.{run.kind}_batch",
            target_type="subject_data_run",
            target_id=run.id,
            controller_id=run.controller_id,
            details={"phase": phase, "changed": dict(report.get("changed", {})), "failed": len(report.get("failed", []))},
            now=now,
        )
    return False


def _finish(session: Session, run: SubjectRun, *, by: Principal, now: dt.datetime, details: Mapping[str, Any]) -> None:
    run.state = "failed" if run.report.get("failed") else "done"
    run.finished_at = now
    run.updated_at = now
    session.flush()
    dsr = session.get(Dsr, run.dsr_id)
    assert dsr is not None
    dsr_service.add_event(session, dsr, f"{run.kind}_{run.state}", by=by, now=now, run_id=run.id, controller_id=run.controller_id, **dict(details))


def run_to_end(
    sessions: Callable[[], Any],
    run_id: int,
    *,
    by: Principal,
    clock: Callable[[], dt.datetime],
    max_steps: int | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_step: Callable[[], None] = lambda: None,
) -> bool:
    """Advance a run batch by batch, one committed transaction each (the actor); True when finished.

    `on_step` is called after each committed batch, then `should_stop` is asked: when it says so the run
    stops there (False), its cursor saved for the next resume.
    """
    steps = 0
    while max_steps is None or steps < max_steps:
        with sessions() as session:
            finished = step(session, run_id, by=by, now=clock())
            bind = session.get_bind()
        steps += 1
        if finished:
            erase.truncate_wal(bind.engine if hasattr(bind, "engine") else bind)
            return True
        on_step()
        if should_stop():
            return False
    return False


def describe_progress(session: Session, run_id: int) -> str:
    """Where a run stands: its state, or for an unfinished one its phase and cursor and what it changed so far (ids and counts only)."""
    run = get_run(session, run_id)
    changed = ", ".join(f"{k} {v}" for k, v in sorted((run.report or {}).get("changed", {}).items())) or "nothing yet"
    if run.state not in ("queued", "running"):
        return f"{run.kind} {run.state} (changed: {changed})"
    cursor = get_state(session, _cursor_name(run.id))
    if cursor is None:
        return f"{run.kind} {run.state}, not started (changed: {changed})"
    return f"{run.kind} {run.state}, phase {cursor['phase']} after id {cursor['after']} (changed so far: {changed})"


def sweep(session: Session, *, now: dt.datetime) -> dict[str, int]:
    """Re-ring unfinished runs gone quiet; delete expired export files and spent tokens."""
    stale = set(session.scalars(select(SubjectRun.id).where(SubjectRun.state.in_(("queued", "running")), SubjectRun.updated_at < now - STALE_AFTER)))
    _RUN_DOORBELL.ring_after_commit(session, stale)
    expired = 0
    for item in session.scalars(select(SubjectExport).where(SubjectExport.expires_at < now, SubjectExport.deleted_at.is_(None)).limit(100)):
        blob_id, item.blob_id, item.deleted_at = item.blob_id, None, now
        session.flush()
        if blob_id is not None:
            delete_blob(session, blob_id)
        expired += 1
    tokens = session.execute(delete(DownloadToken).where(DownloadToken.expires_at < now - dt.timedelta(hours=1)))
    return {"rung": len(stale), "exports_deleted": expired, "tokens_deleted": int(getattr(tokens, "rowcount", 0) or 0)}


def restrict(session: Session, dsr_id: int, controller_id: int, kind: str, *, by: Principal, now: dt.datetime) -> restriction.Restriction:
    """Record a restriction or objection under the controller's confirmed `restrict` instruction."""
    dsr = _dsr(session, dsr_id)
    if controller_id not in dsr.controller_ids:
        raise InvalidRequest("the request does not concern that controller")
    instruction_id = authority(session, dsr_id, "restrict", controller_id)
    try:
        item = restriction.restrict(session, dsr, controller_id, kind, instruction_id=instruction_id, by=by, now=now)
    except restriction.InvalidRestriction as exc:
        raise InvalidRequest(str(exc)) from None
    dsr_service.add_event(session, dsr, "restricted", by=by, now=now, restriction_id=item.id, controller_id=controller_id, kind=kind)
    return item


def lift(session: Session, dsr_id: int, restriction_id: int, *, by: Principal, now: dt.datetime) -> None:
    """Lift a restriction of this request."""
    dsr = _dsr(session, dsr_id)
    try:
        item = restriction.lift(session, restriction_id, by=by, now=now)
    except restriction.InvalidRestriction as exc:
        raise InvalidRequest(str(exc)) from None
    if item.dsr_id != dsr.id:
        raise InvalidRequest("that restriction belongs to another request")
    dsr_service.add_event(session, dsr, "restriction_lifted", by=by, now=now, restriction_id=item.id)


@dataclass
class Outcome:
    """What was done for a request, for its outcome code and the controller's notice."""

    code: str
    lines: list[str]


def outcome(session: Session, dsr: Dsr) -> Outcome:
    """The request's outcome from its runs and restrictions (ids and counts only)."""
    runs = list(session.scalars(select(SubjectRun).where(SubjectRun.dsr_id == dsr.id).order_by(SubjectRun.id)))
    if any(r.state in ("queued", "running") for r in runs):
        raise InvalidRequest("a run of this request is still working")
    restrictions = restriction.active_for(session, dsr.id)
    lines, kinds = [], []
    words = {"export": "data export provided", "erase": "erasure", "rectify": "rectification"}
    for r in runs:
        changed = r.report.get("changed", {})
        summary = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in sorted(changed.items())) or "nothing to change"
        failed = len(r.report.get("failed", []))
        lines.append(f"- {words[r.kind]} (run {r.id}): {summary}" + (f"; {failed} item(s) failed and are listed in our records" if failed else ""))
        kinds.append(r.kind)
    for item in restrictions:
        lines.append(f"- {item.kind} recorded (id {item.id})" + (" and lifted" if item.lifted_at else ""))
        kinds.append("restrict")
    codes = {"export": "exported", "erase": "erased", "rectify": "rectified", "restrict": "restricted"}
    unique = list(dict.fromkeys(kinds))
    code = codes[unique[0]] if len(unique) == 1 else ("completed" if unique else "no_action")
    if any(r.state == "failed" for r in runs):
        code = "partially_failed"
    return Outcome(code, lines or ["- no action was taken"])


def close(session: Session, dsr_id: int, *, settings: dsr_service.DsrSettings, by: Principal, now: dt.datetime) -> Dsr:
    """Record the outcome and notify each controller of completion through the outbox (reference and counts, no personal data)."""
    dsr = _dsr(session, dsr_id)
    if not dsr.is_open:
        raise InvalidRequest("the request is already closed")
    result = outcome(session, dsr)
    dsr_service.close_dsr(session, dsr.id, result.code, by=by, now=now)
    sent = 0
    for controller_id in dsr.controller_ids:
        controller = session.get(Controller, controller_id)
        if controller is None:
            continue
        for address in controller.contact_emails("dsr"):
            enqueue_email(
                session,
                to=address,
                subject=f"Data subject request {dsr.reference} completed",
                body_text=(
                    f"Dear {controller.name},\n\nWe have completed your instructions on data subject request {dsr.reference}.\n"
                    f"Outcome: {result.code.replace('_', ' ')}\n\n" + "\n".join(result.lines) + "\n\n"
                    "We did not contact the data subject unless you instructed us to.\n"
                ),
                reply_to=settings.reply_to,
                controller_id=controller.id,
                related_type="dsr",
                related_id=dsr.id,
                kind="dsr_completion",
                msgid_domain=settings.msgid_domain,
                by=by,
                now=now,
            )
            sent += 1
    dsr_service.add_event(session, dsr, "completion_notice", by=by, now=now, emails=sent, outcome=result.code)
    return dsr


def record_download(session: Session, item: SubjectExport, *, by: Principal, now: dt.datetime) -> None:
    """Audit one download of an export (ids only)."""
    record(
        session,
        by=by,
        action="subject_data.export_download",
        target_type="subject_data_export",
        target_id=item.id,
        controller_id=item.controller_id,
        details={"dsr_id": item.dsr_id, "format": item.format},
        now=now,
    )
