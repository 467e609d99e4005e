"""Tickets with everything a deletion must reach (messages, attachments, raw originals, outbox rows), and a run driver."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.blobs.models import Blob
from app.controllers.models import Controller
from app.deletion import service as deletion
from app.mail.models import OutboxEmail
from app.mail.outbox import enqueue_email
from app.principal import Principal
from app.tickets import service as tickets
from app.tickets.models import Attachment, Message, Ticket
from tests.factories import TEST_PRINCIPAL

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
OPERATOR = Principal.system("tests: operator")


@dataclass
class Made:
    """What `make_tickets` wrote: ids, and how many of each row and blob."""

    ticket_ids: list[int] = field(default_factory=list)
    messages: int = 0
    attachments: int = 0
    raws: int = 0
    outbox: int = 0


def make_tickets(session: Session, controller: Controller, count: int, *, messages: int = 2, now: dt.datetime = T0) -> Made:
    """`count` tickets, each with `messages` inbound messages (raw original kept), one attachment and one outbox reply."""
    made = Made()
    for t in range(count):
        ticket = tickets.create_ticket(
            session,
            controller_id=controller.id,
            requester_name=f"Requester {t}",
            requester_email=f"requester{t}@customer.example",
            subject=f"Order {t}",
            by=TEST_PRINCIPAL,
            now=now,
        )
        for i in range(messages):
            raw = f"From: requester{t}@customer.example\r\nSubject: Order {t}\r\nMessage-ID: <t{t}m{i}.{id(ticket)}@customer.example>\r\n\r\nHello {i}\r\n"
            message = tickets.add_message(
                session,
                ticket,
                tickets.MessageInput(direction="inbound", sender_email=f"requester{t}@customer.example", body_text=f"Hello {i}", raw=raw.encode()),
                by=TEST_PRINCIPAL,
                now=now,
            )
            made.messages += 1
            made.raws += 1
            if i == 0:
                tickets.add_attachment(session, message, filename="invoice.txt", content_type="text/plain", content=b"invoice", by=TEST_PRINCIPAL, now=now)
                made.attachments += 1
        enqueue_email(
            session,
            to=f"requester{t}@customer.example",
            subject="Your order",
            body_text="Your order is on its way.",
            controller_id=controller.id,
            related_type="ticket",
            related_id=ticket.id,
            kind="reply",
            by=TEST_PRINCIPAL,
            now=now,
        )
        made.outbox += 1
        made.ticket_ids.append(ticket.id)
    session.flush()
    return made


def drain(session: Session, run_id: int, *, by: Principal = OPERATOR, now: dt.datetime = T0, limit: int = 1000) -> int:
    """Advance an engine run to its end in this session; the number of batches."""
    for n in range(1, limit):
        if deletion.step(session, run_id, by=by, now=now):
            return n
    raise AssertionError("run did not finish")


def remaining(session: Session, ticket_ids: list[int]) -> dict[str, int]:
    """What is left of these tickets: rows of each table, and blobs in the store as a whole."""
    message_ids = select(Message.id).where(Message.ticket_id.in_(ticket_ids)).scalar_subquery()
    return {
        "tickets": int(session.scalar(select(func.count()).select_from(Ticket).where(Ticket.id.in_(ticket_ids))) or 0),
        "messages": int(session.scalar(select(func.count()).select_from(Message).where(Message.ticket_id.in_(ticket_ids))) or 0),
        "attachments": int(session.scalar(select(func.count()).select_from(Attachment).where(Attachment.message_id.in_(message_ids))) or 0),
        "outbox": int(
            session.scalar(select(func.count()).select_from(OutboxEmail).where(OutboxEmail.related_type == "ticket", OutboxEmail.related_id.in_(ticket_ids)))
            or 0
        ),
        "blobs": int(session.scalar(select(func.count()).select_from(Blob)) or 0),
    }
