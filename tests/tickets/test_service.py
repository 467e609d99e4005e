"""Ticket services: references, blind-index lookup, queue pages, status and assignment audit, chunked attachments."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.blobs.models import BlobChunk
from app.principal import Principal
from app.tickets import lookup, queue
from app.tickets import service as tickets
from app.tickets.html import sanitise_html
from tests.factories import make_controller, make_user

BY = Principal.system("tests")
NOW = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)


def _ticket(session: Session, controller_id: int | None, email: str = "jane@example.org", at: dt.datetime = NOW) -> tickets.Ticket:
    return tickets.create_ticket(session, controller_id=controller_id, requester_name="Jane Roe", requester_email=email, subject="Help", by=BY, now=at)


def test_reference_is_year_and_id_and_findable(session: Session) -> None:
    c = make_controller(session)
    t = _ticket(session, c.id)
    assert t.reference == f"T-2026-{t.id:06d}"
    assert lookup.find_by_reference(session, f"Re: [{t.reference}] Help") is t
    assert lookup.find_by_reference(session, t.reference or "", controller_ids={c.id + 1000}) is None
    assert lookup.find_by_reference(session, "no reference here") is None


def test_requester_lookup_through_blind_index_is_case_insensitive_and_scoped(session: Session) -> None:
    a, b = make_controller(session), make_controller(session)
    ta = _ticket(session, a.id, "Jane@Example.org")
    tb = _ticket(session, b.id, "jane@example.org ")
    _ticket(session, a.id, "someone@else.org")
    assert {t.id for t in lookup.find_by_requester_email(session, "JANE@example.org")} >= {ta.id, tb.id}
    assert [t.id for t in lookup.find_by_requester_email(session, "jane@example.org", controller_ids={a.id})] == [ta.id]
    # The same address gives different index values under different controllers.
    assert ta.requester_email_bidx != tb.requester_email_bidx


def test_queue_pages_with_keyset_cursor_and_filters(session: Session) -> None:
    c = make_controller(session)
    agent = make_user(session, "agent", controllers=[c])
    made = [_ticket(session, c.id, at=NOW + dt.timedelta(minutes=i)) for i in range(7)]
    tickets.change_status(session, made[0].id, "closed", by=BY, now=NOW)
    tickets.assign(session, made[1].id, agent.id, by=BY, now=NOW)
    first = queue.queue(session, controller_id=c.id, limit=3)
    assert [t.id for t in first.rows] == [made[6].id, made[5].id, made[4].id]
    assert [(t.reference, t.subject, t.requester_email) for t in first.rows[:1]] == [(made[6].reference, "Help", "jane@example.org")]
    second = queue.queue(session, controller_id=c.id, limit=3, after=first.next_after)
    assert [t.id for t in second.rows] == [made[3].id, made[2].id, made[1].id]
    third = queue.queue(session, controller_id=c.id, limit=3, after=second.next_after)
    assert [t.id for t in third.rows] == [made[0].id] and third.next_after is None
    assert [t.id for t in queue.queue(session, controller_id=c.id, status="closed").rows] == [made[0].id]
    assert [t.id for t in queue.queue(session, controller_id=c.id, assignee_id=agent.id).rows] == [made[1].id]
    assert len(queue.queue(session, controller_id=c.id, unassigned=True).rows) == 6
    assert [t.id for t in queue.queue(session, controller_id=c.id, older_than=NOW + dt.timedelta(minutes=1)).rows] == [made[0].id]


def test_state_changes_are_audited_with_ids_only(session: Session) -> None:
    c = make_controller(session)
    t = _ticket(session, c.id)
    agent = make_user(session, "agent", controllers=[c])
    tickets.change_status(session, t.id, "waiting", by=BY, now=NOW)
    tickets.assign(session, t.id, agent.id, by=BY, now=NOW)
    events = session.scalars(select(AuditEvent).where(AuditEvent.target_type == "ticket", AuditEvent.target_id == str(t.id)).order_by(AuditEvent.seq)).all()
    assert [e.action for e in events] == ["ticket.create", "ticket.status", "ticket.assign"]
    assert events[1].details == {"status_from": "new", "status_to": "waiting"}
    assert all("jane" not in str(e.details).lower() for e in events)
    with pytest.raises(tickets.InvalidTicketChange):
        tickets.change_status(session, t.id, "deleted", by=BY, now=NOW)


def test_scoped_get_is_not_found_for_another_controller(session: Session) -> None:
    a, b = make_controller(session), make_controller(session)
    t = _ticket(session, a.id)
    with pytest.raises(tickets.TicketNotFound):
        tickets.get_ticket(session, t.id, controller_ids={b.id})


def test_attachment_is_chunked_and_streams_back(session: Session) -> None:
    c = make_controller(session)
    t = _ticket(session, c.id)
    m = tickets.add_message(session, t, tickets.MessageInput(direction="inbound", body_text="see file"), by=BY, now=NOW)
    content = bytes(range(256)) * 10_000  # 2.56 MB -> 3 chunks of 1 MiB
    a = tickets.add_attachment(session, m, filename="scan.pdf", content_type="application/PDF", content=content, by=BY, now=NOW)
    assert a.size == len(content) and a.content_type == "application/pdf"
    assert session.scalar(select(BlobChunk.seq).where(BlobChunk.blob_id == a.blob_id).order_by(BlobChunk.seq.desc()).limit(1)) == 2
    assert b"".join(tickets.attachment_chunks(session, a)) == content
    with pytest.raises(tickets.AttachmentTooLarge):
        tickets.add_attachment(session, m, filename="big.bin", content_type="application/zip", content=content, by=BY, now=NOW, max_bytes=1000)
    assert tickets.inline_allowed("image/png") and not tickets.inline_allowed("text/html") and not tickets.inline_allowed("application/zip")


def test_sanitise_html_removes_scripts_handlers_and_remote_images() -> None:
    out = sanitise_html('<p onclick="x()">Hi<script>alert(1)</script><img src="https://tracker.example/p.gif"><img src="cid:logo"></p>')
    assert "script" not in out and "onclick" not in out and "tracker" not in out
    assert 'src="cid:logo"' in out and "Hi" in out


def test_personal_fields_are_ciphertext_in_the_database(session: Session) -> None:
    c = make_controller(session)
    t = tickets.create_ticket(
        session, controller_id=c.id, requester_name="Canary Q. Person", requester_email="canary@example.org", subject="Canary subject", by=BY, now=NOW
    )
    m = tickets.add_message(
        session, t, tickets.MessageInput(direction="inbound", body_text="canary body", raw=b"Subject: canary raw\r\n\r\ncanary"), by=BY, now=NOW
    )
    tickets.add_attachment(session, m, filename="canary.txt", content_type="text/plain", content=b"canary file", by=BY, now=NOW)
    session.flush()
    dump = b""
    for table in ("tickets", "ticket_messages", "ticket_attachments", "blob_chunks"):
        for row in session.execute(text(f"SELECT * FROM {table}")):
            dump += repr(tuple(row)).encode()
    assert b"anary" not in dump.replace(b"\\x", b"")
    session.expire_all()
    assert t.requester_email == "canary@example.org" and m.body_text == "canary body"


def test_triage_ticket_moves_to_a_controller_and_stays_readable(session: Session) -> None:
    c = make_controller(session)
    t = _ticket(session, None, "triage.person@example.org")
    m = tickets.add_message(session, t, tickets.MessageInput(direction="inbound", body_text="hello", sender_email="triage.person@example.org"), by=BY, now=NOW)
    a = tickets.add_attachment(session, m, filename="f.txt", content_type="text/plain", content=b"data", by=BY, now=NOW)
    assert [x.id for x in lookup.find_by_requester_email(session, "triage.person@example.org", controller_ids=set(), include_triage=True)] == [t.id]
    tickets.move_to_controller(session, t.id, c.id, by=BY, now=NOW)
    session.expire_all()
    assert t.controller_id == c.id and t.key_owner == c.id
    assert [x.id for x in lookup.find_by_requester_email(session, "triage.person@example.org", controller_ids={c.id})] == [t.id]
    assert m.body_text == "hello" and a.filename == "f.txt"
    assert b"".join(tickets.attachment_chunks(session, a)) == b"data"


def test_demo_tickets_are_seeded_once_with_threads_and_attachments(session: Session) -> None:
    from app.tickets.demo import seed
    from app.tickets.models import Attachment

    make_controller(session)
    lines = list(seed(session, now=NOW, count=20))
    assert lines and lines[0].startswith("tickets: 20 demo tickets with ")
    assert session.scalar(select(func.count()).select_from(Attachment)) > 0
    assert list(seed(session, now=NOW, count=20)) == []  # a second run adds nothing


def test_open_ticket_writes_what_create_then_add_write(session: Session) -> None:
    # Given the inbound path's one call for a new ticket and its first message (one audit INSERT for both events)
    c = make_controller(session)
    first = tickets.MessageInput(direction="inbound", body_text="Hello", sender_email="jane@example.org", message_id="<open@example.org>", raw=b"raw")
    ticket, message = tickets.open_ticket(
        session, controller_id=c.id, requester_name="Jane Roe", requester_email="jane@example.org", subject="Help", first=first, by=BY, now=NOW
    )
    # and the same through create_ticket, then add_message
    other = _ticket(session, c.id)
    second = tickets.add_message(session, other, dataclasses.replace(first, message_id="<add@example.org>"), by=BY, now=NOW)

    def events(ticket_id: int) -> list[AuditEvent]:
        return list(
            session.scalars(select(AuditEvent).where(AuditEvent.target_type == "ticket", AuditEvent.target_id == str(ticket_id)).order_by(AuditEvent.seq))
        )

    opened, made = events(ticket.id), events(other.id)
    # Then the events are the same, in the same order, chained one after the other
    assert [(e.action, e.details, e.controller_id) for e in opened] == [
        ("ticket.create", {"status": "new", "triage": False}, c.id),
        ("ticket.message", {"message_id": message.id, "direction": "inbound"}, c.id),
    ]
    assert [(e.action, e.details) for e in made] == [
        (e.action, {**e.details, "message_id": second.id} if "message_id" in e.details else e.details) for e in opened
    ]
    assert opened[1].seq == opened[0].seq + 1 and opened[1].prev_hash == opened[0].hash and made[0].seq > opened[1].seq
    # and the ticket and message are the same as well
    assert (ticket.status, ticket.requester_email, ticket.reference) == ("new", "jane@example.org", f"T-2026-{ticket.id:06d}")
    assert (message.ticket_id, message.body_text, message.raw_sha256) == (ticket.id, "Hello", second.raw_sha256)
    assert lookup.find_by_message_ids(session, ["<open@example.org>"]) is not None
