"""The DSR domain's retention categories, registered on the deletion engine (`app.deletion.categories`) at app creation.

- `dsr_records` (counts from closing; anonymise): a closed request keeps what proves it was handled — its
  reference, types, state, outcome, dates, controllers (its forwards), history codes, the instructions' decisions,
  verdicts and flags — and loses the subject's identity: name, address and its blind index, other identifiers,
  the request text and the missed-deadline reason (free text), and its instructions' texts and sender addresses
  (`verified` still says a registered contact sent it). A request's owner is its first controller (lowest id;
  none: the desk); a hold on any of its controllers, on its ticket, or on its subject at one of them keeps it.
  Kept on purpose: a restriction's and an erasure marker's blind index (they still act on new mail).
- `export_files` (counts from creation; delete): a subject data export's encrypted file (a blob) goes, its row
  stays marked deleted (format, size, digest, dates: what was handed over). Exports also expire on their own
  after 7 days (`app.subject_data.export.expire`, which asks the same hold check and keeps what a hold covers);
  retention is the backstop the policy promises.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Subquery, exists, func, or_, select, update
from sqlalchemy.orm import Session

from app.blobs.store import delete_blobs
from app.crypto.cipher import CryptoError
from app.deletion.categories import Query, RecordCategory
from app.deletion.report import Item
from app.deletion.scope import digests
from app.deletion.stores import RunContext
from app.dsr.models import Dsr, DsrForward, Instruction
from app.subject_data.models import SubjectExport


def _first_controller() -> Subquery:
    """Each forwarded request's first controller (the lowest id): its owner for retention."""
    return select(DsrForward.dsr_id, func.min(DsrForward.controller_id).label("cid")).group_by(DsrForward.dsr_id).subquery()


def _subject_digests(session: Session, dsr_ids: Sequence[int], controllers: dict[int, set[int]]) -> dict[int, tuple[bytes, ...]]:
    """Each request's subject address as each of its controllers' email blind index (what a subject hold keys on)."""
    out: dict[int, tuple[bytes, ...]] = {}
    for dsr in session.scalars(select(Dsr).where(Dsr.id.in_(list(dsr_ids) or [0]))):
        try:
            address = dsr.subject_email
        except CryptoError:
            address = None
        found: set[bytes] = set()
        for cid in sorted(controllers.get(dsr.id, set())):
            found.update(digests(session, [address], cid) if address else [])
        out[dsr.id] = tuple(sorted(found))
    return out


_INSTRUCTION_TEXT = or_(
    Instruction.reply_text_ct.is_not(None),
    Instruction.response_text_ct.is_not(None),
    Instruction.flag_reason_ct.is_not(None),
    Instruction.sender_email_ct.is_not(None),
)
_IDENTITY = or_(
    Dsr.subject_name_ct.is_not(None),
    Dsr.subject_email_ct.is_not(None),
    Dsr.subject_email_bidx.is_not(None),
    Dsr.subject_identifiers_ct.is_not(None),
    Dsr.request_text_ct.is_not(None),
    Dsr.missed_reason_ct.is_not(None),
    exists().where(Instruction.dsr_id == Dsr.id, _INSTRUCTION_TEXT),
)


def _dsr_owners(session: Session) -> list[int | None]:
    first = _first_controller()
    found = set(session.scalars(select(first.c.cid).distinct()))
    return sorted((c for c in found if c is not None), key=int) + [None]


def find_dsrs(session: Session, query: Query) -> list[Item]:
    """Closed requests still naming their subject, closed at or before the cutoff, of one owner (None: no controller)."""
    first = _first_controller()
    stmt = (
        select(Dsr.id, Dsr.ticket_id, first.c.cid)
        .outerjoin(first, first.c.dsr_id == Dsr.id)
        .where(Dsr.state == "closed", Dsr.id > query.after, _IDENTITY)
        .order_by(Dsr.id)
        .limit(query.limit)
    )
    if query.ids is not None:
        stmt = stmt.where(Dsr.id.in_(list(query.ids) or [0]))
    else:
        stmt = stmt.where(first.c.cid.is_(None) if query.controller_id is None else first.c.cid == query.controller_id)
    if query.cutoff is not None:
        stmt = stmt.where(Dsr.closed_at.is_not(None), Dsr.closed_at <= query.cutoff)
    rows = session.execute(stmt).all()
    controllers: dict[int, set[int]] = {}
    for dsr_id, cid in session.execute(select(DsrForward.dsr_id, DsrForward.controller_id).where(DsrForward.dsr_id.in_([r.id for r in rows] or [0]))):
        controllers.setdefault(dsr_id, set()).add(cid)
    subjects = _subject_digests(session, [r.id for r in rows], controllers) if query.holds else {}
    return [
        Item("dsr", r.id, controller_id=r.cid, ticket_id=r.ticket_id, owners=tuple(sorted(controllers.get(r.id, set()))), subjects=subjects.get(r.id, ()))
        for r in rows
    ]


def anonymise_dsrs(ctx: RunContext, items: Sequence[Item]) -> None:
    """The subject's identity and the free texts of these requests and their instructions; the evidence stays."""
    ids = [i.id for i in items]
    blank = {"synchronize_session": False}
    ctx.session.execute(
        update(Dsr)
        .where(Dsr.id.in_(ids))
        .values(
            subject_name_ct=None,
            subject_email_ct=None,
            subject_email_bidx=None,
            subject_identifiers_ct=None,
            request_text_ct=None,
            missed_reason_ct=None,
            updated_at=ctx.now,
        ),
        execution_options=blank,
    )
    done = ctx.session.execute(
        update(Instruction)
        .where(Instruction.dsr_id.in_(ids), _INSTRUCTION_TEXT)
        .values(reply_text_ct=None, response_text_ct=None, flag_reason_ct=None, sender_email_ct=None, sender_email_bidx=None),
        execution_options=blank,
    )
    ctx.session.expire_all()  # the bulk updates bypassed the identity map
    ctx.report.count("dsrs", "dsrs_anonymised", len(ids))
    ctx.report.count("dsr_instructions", "instructions_anonymised", int(getattr(done, "rowcount", 0) or 0))


DSR_RECORDS = RecordCategory("dsr_records", "dsr", "closed request(s)", _dsr_owners, find_dsrs, {"anonymise": anonymise_dsrs})


def _export_owners(session: Session) -> list[int | None]:
    found: set[int] = set(session.scalars(select(SubjectExport.controller_id).where(SubjectExport.blob_id.is_not(None)).distinct()))
    return [*sorted(found)]


def find_exports(session: Session, query: Query) -> list[Item]:
    """Exports whose file is still stored, made at or before the cutoff, of one controller."""
    e = SubjectExport
    stmt = (
        select(e.id, e.controller_id, e.dsr_id, Dsr.ticket_id)
        .join(Dsr, Dsr.id == e.dsr_id)
        .where(e.blob_id.is_not(None), e.id > query.after)
        .order_by(e.id)
        .limit(query.limit)
    )
    if query.ids is not None:
        stmt = stmt.where(e.id.in_(list(query.ids) or [0]))
    elif query.controller_id is None:
        return []
    else:
        stmt = stmt.where(e.controller_id == query.controller_id)
    if query.cutoff is not None:
        stmt = stmt.where(e.created_at <= query.cutoff)
    rows = session.execute(stmt).all()
    subjects: dict[tuple[int, int], tuple[bytes, ...]] = {}
    for r in rows:
        if not query.holds:
            subjects[(r.dsr_id, r.controller_id)] = ()
        elif (r.dsr_id, r.controller_id) not in subjects:
            subjects[(r.dsr_id, r.controller_id)] = _subject_digests(session, [r.dsr_id], {r.dsr_id: {r.controller_id}}).get(r.dsr_id, ())
    return [Item("export", r.id, controller_id=r.controller_id, ticket_id=r.ticket_id, subjects=subjects[(r.dsr_id, r.controller_id)]) for r in rows]


def delete_exports(ctx: RunContext, items: Sequence[Item]) -> None:
    """The files (blobs) of these exports; each row stays, marked deleted."""
    rows = list(ctx.session.scalars(select(SubjectExport).where(SubjectExport.id.in_([i.id for i in items] or [0]))))
    blobs = [r.blob_id for r in rows if r.blob_id is not None]
    for row in rows:
        row.blob_id = None
        row.deleted_at = row.deleted_at or ctx.now
    ctx.session.flush()
    delete_blobs(ctx.session, blobs)
    ctx.report.count("subject_data_exports", "exports_deleted", len(rows))
    ctx.report.count("blobs", "blobs_deleted", len(blobs))


EXPORT_FILES = RecordCategory("export_files", "export", "export file(s)", _export_owners, find_exports, {"delete": delete_exports})
