"""The request's part of an erasure or rectification run (the deletion engine does the rest; app.deletion).

An erasure (or rectification) under a confirmed instruction is a run of the
engine with authority = that instruction and scope = the subject within the
controller. What only the request knows is added here, through the hooks the
engine calls for the "instruction" authority (registered by `register`, at
app creation):

- the plan: the request's own source ticket (when it is that controller's
  or still in triage), and the subject's requests routed only to that
  controller (their outbox rows are the subject's too);
- two stores walked after the engine's: the controller's instruction texts
  quoting the request, and the requests' subject fields (last: they name the
  subject), plus restrictions keyed on the old address on rectification;
- after each batch: the request's record of the run (`SubjectRun`: state and
  counts for its page, its CLI and the notice to the controller), and when
  the run ends the request's history line;
- the release: when a legal hold that kept items from the erasure has ended,
  the next retention run asks for the run that takes them
  (`app.retention.release`): an erasure of the same subject under the same
  instruction, authority `hold_release`, with a record of its own on the
  request; when it ends, the controller is told (`erasure_notice`).

The subject is found again by what the request still knows (its fields, kept
when the hold covered the request itself), the blind index of each address
erased (`aftercare.marked`), and the addresses and names on what the hold kept
(decrypted: few rows).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.crypto.cipher import CryptoError
from app.deletion import service as deletion
from app.deletion.authorities import AUTHORITIES, RELEASE, AuthorityHooks
from app.deletion.models import DeletionRun
from app.deletion.report import Item, summary
from app.deletion.rewrite import subject_emails, terms_of
from app.deletion.scope import ticket_ids_of
from app.deletion.stores import Batch, RunContext, Store, one_pass
from app.deletion.subject import learn
from app.dsr.history import add_event
from app.dsr.models import Dsr, DsrForward, Instruction
from app.dsr.settings import DsrSettings
from app.principal import Principal
from app.subject_data.aftercare import mark, marked
from app.subject_data.erasure_notice import release_notice
from app.subject_data.find import source_ticket
from app.subject_data.models import Restriction, SubjectRun
from app.tickets.models import Message, Ticket

AUTHORITY = "instruction"
# The engine's action for each kind of request run.
ACTION_FOR = {"erase": "redact", "rectify": "rectify"}


def subject_run_of(session: Session, deletion_run_id: int) -> SubjectRun | None:
    """The request's record of an engine run (None: the run is not a request's)."""
    return session.scalar(select(SubjectRun).where(SubjectRun.deletion_run_id == deletion_run_id))


def released_from(session: Session, record: SubjectRun) -> SubjectRun | None:
    """For the run of a hold's release: the request's run whose kept items it takes (None for any other run)."""
    run = session.get(DeletionRun, record.deletion_run_id) if record.deletion_run_id is not None else None
    if run is None or run.authority_kind != RELEASE:
        return None
    return subject_run_of(session, run.authority_id or 0)


def _subject_dsr_ids(session: Session, record: SubjectRun, email: str | None) -> list[int]:
    """The run's request and the subject's other requests routed only to this controller."""
    ids = {record.dsr_id}
    if email:
        for dsr in session.scalars(select(Dsr).where(Dsr.subject_email.matches(session, email))):
            if dsr.controller_ids == [record.controller_id]:
                ids.add(dsr.id)
    return sorted(ids)


def _plan(ctx: RunContext) -> None:
    record = subject_run_of(ctx.session, ctx.run.id)
    if record is None:
        return
    dsr = ctx.session.get(Dsr, record.dsr_id)
    source = source_ticket(ctx.session, dsr.ticket_id if dsr else None, record.controller_id)
    if source is not None:
        ctx.plan["ticket_ids"] = [*ctx.ids("ticket_ids"), source]
    emails = ctx.params.get("emails") or [None]
    dsr_ids = _subject_dsr_ids(ctx.session, record, emails[0])
    if ctx.erasing:
        # What the subject gave in their requests (a phone, a street) is theirs to erase everywhere too.
        texts, names = [], []
        for item in ctx.session.scalars(select(Dsr).where(Dsr.id.in_(dsr_ids))):
            try:
                texts += [item.request_text, item.subject_identifiers]
                names.append(item.subject_name)
            except CryptoError:
                ctx.report.fail("dsr", item.id, "unreadable")
        learn(ctx, texts, names)
        mark(ctx.session, record.dsr_id, record.controller_id, list(ctx.params.get("emails") or []), now=ctx.now)
    ctx.plan["dsr_ids"] = dsr_ids
    ctx.plan.setdefault("related", {})["dsr"] = dsr_ids
    ctx.report.plan(dsrs=len(dsr_ids))


def _select_instructions(ctx: RunContext, after: int) -> Batch:
    rows = ctx.session.execute(
        select(Instruction.id, Instruction.controller_id).where(Instruction.dsr_id.in_(ctx.ids("dsr_ids") or [0])).order_by(Instruction.id)
    )
    return one_pass([Item("instruction", r.id, controller_id=r.controller_id) for r in rows])


def _apply_instructions(ctx: RunContext, items: Sequence[Item]) -> None:
    """The controller's instruction texts (they quote the request)."""
    rw = ctx.rewriter
    for item in ctx.session.scalars(select(Instruction).where(Instruction.id.in_([i.id for i in items] or [0])).order_by(Instruction.id)):
        try:
            texts = {n: getattr(item, n) for n in ("reply_text", "response_text", "flag_reason")}
        except CryptoError:
            ctx.report.fail("instruction", item.id, "unreadable")
            continue
        rewritten = [n for n, v in texts.items() if rw(v) != v]
        for name in rewritten:
            setattr(item, name, rw(texts[name]))
        ctx.report.count("dsr_instructions", "instructions", int(bool(rewritten)))
    ctx.session.flush()


def _select_requests(ctx: RunContext, after: int) -> Batch:
    return one_pass([Item("dsr", i, controller_id=ctx.run.controller_id) for i in ctx.ids("dsr_ids")])


def _apply_requests(ctx: RunContext, items: Sequence[Item]) -> None:
    """The subject fields of the requests (last: they name the subject), restrictions keyed on the old address."""
    session, rw, record = ctx.session, ctx.rewriter, subject_run_of(ctx.session, ctx.run.id)
    if record is None:
        return
    for dsr in session.scalars(select(Dsr).where(Dsr.id.in_([i.id for i in items] or [0])).order_by(Dsr.id)):
        controllers = set(session.scalars(select(DsrForward.controller_id).where(DsrForward.dsr_id == dsr.id)))
        done = set(
            session.scalars(select(SubjectRun.controller_id).where(SubjectRun.dsr_id == dsr.id, SubjectRun.kind == record.kind, SubjectRun.state == "done"))
        )
        if controllers - {record.controller_id} - done:
            # Other controllers of the request have not had the same done yet: their instructions decide about its subject fields.
            ctx.report.count("dsrs", "dsrs_kept_for_other_controllers")
            continue
        try:
            request_text, missed_reason = dsr.request_text, dsr.missed_reason
        except CryptoError:
            ctx.report.fail("dsr", dsr.id, "unreadable")
            continue
        if ctx.erasing:
            dsr.subject_email, dsr.subject_name, dsr.subject_identifiers = None, None, None
        else:
            if ctx.new_email:
                dsr.subject_email = ctx.new_email
            if ctx.params.get("new_name"):
                dsr.subject_name = ctx.params["new_name"]
            if dsr.subject_identifiers:
                dsr.subject_identifiers = rw(dsr.subject_identifiers)
        if rw(request_text) != request_text:
            dsr.request_text = rw(request_text)
        if rw(missed_reason) != missed_reason:
            dsr.missed_reason = rw(missed_reason)
        ctx.report.count("dsrs", "dsrs")
    emails = ctx.params.get("emails") or []
    if not ctx.erasing and emails and ctx.new_email:
        old = Ticket.requester_email.index_value(session, emails[0], controller_id=record.controller_id)
        new = Ticket.requester_email.index_value(session, ctx.new_email, controller_id=record.controller_id)
        for item in session.scalars(select(Restriction).where(Restriction.controller_id == record.controller_id, Restriction.email_bidx == old)):
            item.email_bidx = new
            ctx.report.count("subject_restrictions", "restrictions")
    session.flush()


def _after_batch(session: Session, run: DeletionRun, *, settings: DsrSettings, by: Principal, now: dt.datetime) -> None:
    """The request's record follows the run; when the run ends, a line in the request's history (ids and counts),
    and for a hold's release the notice to the controller that what the hold kept is erased."""
    record = subject_run_of(session, run.id)
    if record is None:
        return
    report = run.report or {}
    record.state, record.updated_at = run.state, now
    record.report = {**summary(report), "planned": dict(report.get("planned", {})), "stores": dict(report.get("stores", {}))}
    if not run.is_finished:
        return
    record.finished_at = run.finished_at
    session.flush()
    dsr = session.get(Dsr, record.dsr_id)
    if dsr is None:
        return
    details: dict[str, int] = {**record.report["changed"], "failed": len(record.report["failed"])}
    if record.report["kept"]:
        details["kept"] = len(record.report["kept"])
    if run.authority_kind != RELEASE:
        add_event(session, dsr, f"{record.kind}_{record.state}", by=by, now=now, run_id=record.id, controller_id=record.controller_id, **details)
        return
    source = subject_run_of(session, run.authority_id or 0)
    emails = release_notice(session, record, source, settings=settings, by=by, now=now)
    add_event(session, dsr, f"hold_release_{record.state}", by=by, now=now, run_id=record.id, controller_id=record.controller_id, emails=emails, **details)


def _kept_identity(session: Session, digests: list[bytes], controller_id: int) -> tuple[list[str], list[str]]:
    """The addresses and names on the subject's tickets and messages still there (what a hold kept), by blind index."""
    emails: list[str] = []
    names: list[str] = []
    tickets = ticket_ids_of(session, digests, controller_id)
    found: list[tuple[str | None, str | None]] = []
    try:
        found += [(t.requester_email, t.requester_name) for t in session.scalars(select(Ticket).where(Ticket.id.in_(tickets or [0])))]
        stmt = select(Message).where(Message.sender_email_bidx.in_(digests or [b""]), Message.key_owner == controller_id)
        found += [(m.sender_email, m.sender_name) for m in session.scalars(stmt)]
    except CryptoError:
        pass  # an unreadable row: the blind index still finds the subject's rows, the run reports what it cannot read
    for email, name in found:
        if email and email.casefold() not in {e.casefold() for e in emails}:
            emails.append(email)
        if name and name not in names:
            names.append(name)
    return emails, names


def _release(session: Session, source: DeletionRun, *, by: Principal, now: dt.datetime) -> DeletionRun | None:
    """The hook of a hold's release: erase again, under the same instruction, what `source` (an erasure) kept; None if not one."""
    record = subject_run_of(session, source.id)
    dsr = session.get(Dsr, record.dsr_id) if record is not None else None
    if record is None or dsr is None or record.kind != "erase":
        return None
    controller_id = record.controller_id
    try:
        email, name, identifiers = dsr.subject_email, dsr.subject_name, dsr.subject_identifiers
    except CryptoError:
        email, name, identifiers = None, None, None
    digests = marked(session, dsr.id, controller_id)
    emails = list(subject_emails(email, identifiers)) if email else []
    kept_emails, kept_names = _kept_identity(session, digests, controller_id)
    emails += [e for e in kept_emails if e.casefold() not in {x.casefold() for x in emails}]
    if not emails and not digests:
        return None
    terms = {t: "[erased]" for t in [*terms_of(email, name, identifiers), *emails, *kept_names]}
    names = [n for n in [name, *kept_names] if n]
    run = deletion.start(
        session,
        deletion.Authority(RELEASE, source.id),
        deletion.Scope.subject(controller_id, tuple(emails), email_digests=tuple(digests)),
        "redact",
        terms=terms,
        extra={"new_name": None, "names": names},
        by=by,
        now=now,
    )
    again = SubjectRun(
        dsr_id=dsr.id,
        controller_id=controller_id,
        kind="erase",
        state="queued",
        instruction_id=record.instruction_id,
        requested_by=None,
        key_owner=controller_id,
        deletion_run_id=run.id,
        report={},
        created_at=now,
        updated_at=now,
    )
    session.add(again)
    session.flush()
    add_event(session, dsr, "hold_release_started", by=by, now=now, run_id=again.id, released_run_id=record.id, controller_id=controller_id)
    return run


def hooks(settings: DsrSettings) -> AuthorityHooks:
    """The request's hooks on the engine; `settings` address the notice after a hold's release."""

    def after_batch(session: Session, run: DeletionRun, *, by: Principal, now: dt.datetime) -> None:
        _after_batch(session, run, settings=settings, by=by, now=now)

    return AuthorityHooks(
        plan=_plan,
        stores=(Store("instructions", _select_instructions, _apply_instructions), Store("dsrs", _select_requests, _apply_requests)),
        after_batch=after_batch,
        release=_release,
    )


def register(settings: DsrSettings) -> None:
    """Register the request's hooks for runs under a confirmed instruction (idempotent; called at app creation)."""
    AUTHORITIES.add(AUTHORITY, hooks(settings))
