"""Closing a request after execution: its outcome from its runs and restrictions, and the notice to each controller."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.controllers.models import Controller
from app.dsr.closing import close_dsr
from app.dsr.contacts import email_dsr_contacts
from app.dsr.history import add_event
from app.dsr.models import Dsr
from app.dsr.settings import DsrSettings
from app.principal import Principal
from app.subject_data.aftercare import unhandled
from app.subject_data.authority import request
from app.subject_data.erasure_notice import is_release, kept_by_hold
from app.subject_data.errors import InvalidRequest
from app.subject_data.models import SubjectRun
from app.subject_data.restrict import active_for

_WORDS = {"export": "data export provided", "erase": "erasure", "rectify": "rectification"}
_RELEASE = "erasure of the items a legal hold had kept, now that it has ended (hold release)"
_CODES = {"export": "exported", "erase": "erased", "rectify": "rectified", "restrict": "restricted"}


@dataclass
class Outcome:
    """What was done for a request, for its outcome code and the controller's notice."""

    code: str
    lines: list[str]


def _line(session: Session, run: SubjectRun, now: dt.datetime) -> str:
    changed = run.report.get("changed", {})
    summary = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in sorted(changed.items())) or "nothing to change"
    failed, kept, review = (len(run.report.get(k, [])) for k in ("failed", "kept", "review"))
    # Pexgle §13.3: per hold, what is kept, why and until when (erased by us when the hold ends).
    holds = kept_by_hold(session, run.report.get("kept") or [], now=now) if kept else []
    return (
        f"- {_RELEASE if is_release(session, run) else _WORDS[run.kind]} (run {run.id}): {summary}"
        + (f"; {failed} item(s) failed and are listed in our records" if failed else "")
        + (f"; {kept} item(s) kept under a legal hold, erased when it ends" if kept else "")
        + (f"; {review} item(s) left for review by our privacy officer (the index cannot decide them)" if review else "")
        + "".join(f"\n    {line}" for line in per_store(run.report.get("stores") or {}))
        + "".join(f"\n    {hold.line()}" for hold in holds)
    )


def per_store(stores: dict[str, dict[str, int]]) -> list[str]:
    """One line per store the run touched: what was erased, redacted, closed or purged there (counts only)."""
    return [
        f"{store.replace('_', ' ')}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(counts.items())) for store, counts in sorted(stores.items())
    ]


def outcome(session: Session, dsr: Dsr, *, now: dt.datetime) -> Outcome:
    """The request's outcome from its runs and restrictions (ids and counts only)."""
    runs = list(session.scalars(select(SubjectRun).where(SubjectRun.dsr_id == dsr.id).order_by(SubjectRun.id)))
    if any(r.state in ("queued", "running") for r in runs):
        raise InvalidRequest("a run of this request is still working")
    for controller_id in sorted({r.controller_id for r in runs if r.kind == "erase"}):
        kept = {int(k["id"]) for r in runs if r.controller_id == controller_id for k in r.report.get("kept", []) if k["what"] == "message"}
        left = unhandled(session, dsr.id, controller_id, kept=kept)
        if left:
            # Never "erased" while mail of the subject is left (it arrived after the run, or was missed): erase again first.
            raise InvalidRequest(f"{left} message(s) of the erased subject at controller {controller_id} are not erased yet: run the erasure again")
    lines = [_line(session, r, now) for r in runs]
    kinds = [r.kind for r in runs]
    for item in active_for(session, dsr.id):
        lines.append(f"- {item.kind} recorded (id {item.id})" + (" and lifted" if item.lifted_at else ""))
        kinds.append("restrict")
    unique = list(dict.fromkeys(kinds))
    code = _CODES[unique[0]] if len(unique) == 1 else ("completed" if unique else "no_action")
    if any(r.state == "failed" for r in runs):
        code = "partially_failed"
    return Outcome(code, lines or ["- no action was taken"])


def close(session: Session, dsr_id: int, *, settings: DsrSettings, by: Principal, now: dt.datetime) -> Dsr:
    """Record the outcome and notify each controller of completion through the outbox (reference and counts, no personal data)."""
    dsr = request(session, dsr_id)
    if not dsr.is_open:
        raise InvalidRequest("the request is already closed")
    result = outcome(session, dsr, now=now)
    close_dsr(session, dsr.id, result.code, by=by, now=now)
    sent = 0
    for controller_id in dsr.controller_ids:
        controller = session.get(Controller, controller_id)
        if controller is None:
            continue
        sent += len(
            email_dsr_contacts(
                session,
                dsr,
                controller,
                subject=f"Data subject request {dsr.reference} completed",
                body=(
                    f"Dear {controller.name},\n\nWe have completed your instructions on data subject request {dsr.reference}.\n"
                    f"Outcome: {result.code.replace('_', ' ')}\n\n" + "\n".join(result.lines) + "\n\n"
                    "We did not contact the data subject unless you instructed us to.\n"
                ),
                kind="dsr_completion",
                settings=settings,
                by=by,
                now=now,
            )
        )
    add_event(session, dsr, "completion_notice", by=by, now=now, emails=sent, outcome=result.code)
    return dsr
