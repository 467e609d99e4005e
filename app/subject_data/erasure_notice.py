"""What an erasure kept under legal holds, as the controller is told it (Pexgle §13.3: what is kept, why, until when).

A run's report lists each kept item with its reason ("hold 3: litigation"); the hold's domain describes each
reason through the engine's hold registry (`app.deletion.holds.HOLDS.describe`), so the request's notice, its
page and the notice after a hold ended name per hold its basis and text, the last day it keeps the data (or
"until lifted"), whether it has ended, and how many items it kept. Ids, counts and the hold's own words only:
nothing of the subject beyond what the completion notice already says (the request's reference).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.controllers.models import Controller
from app.deletion.authorities import RELEASE
from app.deletion.holds import HOLDS
from app.deletion.models import DeletionRun
from app.dsr.contacts import email_dsr_contacts
from app.dsr.models import Dsr
from app.dsr.settings import DsrSettings
from app.principal import Principal
from app.subject_data.models import SubjectRun

KIND = "dsr_hold_release"


@dataclass(frozen=True)
class KeptUnderHold:
    """The items of one run kept under one hold: the reason as reported, the hold's facts (None: unknown), the count."""

    reason: str
    basis: str
    basis_text: str
    last_day: dt.date | None
    ended: dt.date | None
    items: int
    known: bool = True

    @property
    def until(self) -> str:
        """The last day kept, or "until lifted"."""
        return f"until {self.last_day.isoformat()}" if self.last_day else "until lifted"

    def line(self) -> str:
        """One line for the controller: count, hold, basis and text, until when, and its end if it has ended."""
        if not self.known:
            return f"{self.items} item(s) kept ({self.reason})"
        text = f" ({self.basis_text})" if self.basis_text else ""
        ended = f"; the hold ended on {self.ended.isoformat()}" if self.ended else ""
        return f"{self.items} item(s) kept under legal {self.reason.split(':')[0]}: {self.basis}{text}, {self.until}{ended}"


def kept_by_hold(session: Session, kept: Sequence[Mapping[str, Any]], *, now: dt.datetime) -> list[KeptUnderHold]:
    """A report's kept items grouped by hold, in the order of the reasons (one query per describer)."""
    counts = Counter(str(k.get("reason", "")) for k in kept)
    facts = HOLDS.describe(session, list(counts), now)
    found = []
    for reason, n in sorted(counts.items()):
        f = facts.get(reason)
        if f is None:
            found.append(KeptUnderHold(reason, "", "", None, None, n, known=False))
        else:
            found.append(KeptUnderHold(reason, f.basis, f.basis_text, f.last_day, f.ended, n))
    return found


@dataclass(frozen=True)
class Released:
    """How one ended hold's items were released: the release run, its state, when it finished, how many items it erased."""

    run_id: int
    state: str
    finished: dt.datetime | None
    erased: int


def releases_of(session: Session, record: SubjectRun) -> list[SubjectRun]:
    """The request's runs that took what legal holds kept from `record` (hold releases), oldest first."""
    if record.deletion_run_id is None:
        return []
    engine_runs = select(DeletionRun.id).where(DeletionRun.authority_kind == RELEASE, DeletionRun.authority_id == record.deletion_run_id)
    return list(session.scalars(select(SubjectRun).where(SubjectRun.deletion_run_id.in_(engine_runs)).order_by(SubjectRun.id)))


def is_release(session: Session, record: SubjectRun) -> bool:
    """Whether `record` is a hold's release (it erases what a legal hold had kept from an earlier run)."""
    run = session.get(DeletionRun, record.deletion_run_id) if record.deletion_run_id is not None else None
    return run is not None and run.authority_kind == RELEASE


def released_by(session: Session, record: SubjectRun, kept: Sequence[KeptUnderHold]) -> dict[str, Released]:
    """Per ended hold (its reason) of `record`, the first release run started once it had ended, and what that run erased.

    Erased: the items the hold kept in `record` that the release did not keep again (under another hold in force).
    """
    releases = releases_of(session, record)
    items = record.report.get("kept") or []
    found: dict[str, Released] = {}
    for hold in kept:
        if hold.ended is None:
            continue
        release = next((r for r in releases if r.created_at.date() >= hold.ended), None)
        if release is None:
            continue
        held = {(k.get("what"), k.get("id")) for k in items if k.get("reason") == hold.reason}
        again = {(k.get("what"), k.get("id")) for k in release.report.get("kept") or []}
        found[hold.reason] = Released(release.id, release.state, release.finished_at, len(held - again))
    return found


def release_notice(session: Session, record: SubjectRun, source: SubjectRun | None, *, settings: DsrSettings, by: Principal, now: dt.datetime) -> int:
    """Tell the controller's DSR contacts that what ended holds kept from `source` is erased by `record` (outbox); how many emails.

    Raises what `email_dsr_contacts` raises (an outbound policy's refusal): the caller's transaction is then rolled back.
    """
    dsr = session.get(Dsr, record.dsr_id)
    controller = session.get(Controller, record.controller_id)
    if dsr is None or controller is None:
        return 0
    before = kept_by_hold(session, (source.report if source else {}).get("kept") or [], now=now)
    ended = [k for k in before if k.ended]
    still = kept_by_hold(session, record.report.get("kept") or [], now=now)
    changed = record.report.get("changed") or {}
    lines = [f"Dear {controller.name},", ""]
    lines.append("This is not a new request: it is the erasure of items a legal hold had kept from an erasure you instructed.")
    lines.append(
        f"When we erased the data of the subject of data subject request {dsr.reference} under your instruction"
        + (f" (run {source.id})" if source else "")
        + (", we kept some of it under legal holds. " if len(before) > 1 else ", we kept some of it under a legal hold. ")
        + ("These holds have now ended:" if len(ended) > 1 else "This hold has now ended:" if ended else "A hold has now ended.")
    )
    lines += [f"  - {k.line()}" for k in ended]
    they = "they" if len(ended) > 1 else "it"
    summary = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in sorted(changed.items())) or "nothing left to change"
    if record.state == "failed":
        failed = len(record.report.get("failed") or [])
        lines += ["", f"We erased what {they} kept, but {failed} item(s) failed and are listed in our records (run {record.id}): {summary}."]
    else:
        lines += ["", f"What {they} kept is now erased (run {record.id}): {summary}."]
    if still:
        lines += ["", "Still kept under a legal hold in force, and erased when it ends:"]
        lines += [f"  - {k.line()}" for k in still]
    lines += ["", "We did not contact the data subject."]
    sent = email_dsr_contacts(
        session,
        dsr,
        controller,
        subject=f"Data subject request {dsr.reference}: legal hold released, the items it had kept are now erased (run {record.id})",
        body="\n".join(lines) + "\n",
        kind=KIND,
        settings=settings,
        by=by,
        now=now,
    )
    return len(sent)
