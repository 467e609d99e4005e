"""Demo tickets: a few hundred fictional requests with threads, notes and attachments (`demo seed`)."""

from __future__ import annotations

import datetime as dt
import random
import secrets
from collections.abc import Iterator

from anyascii import anyascii
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.service import record
from app.controllers.models import Controller
from app.crypto import message_ids
from app.principal import Principal
from app.tickets import lookup
from app.tickets import service as tickets
from app.tickets.models import Message, Ticket, key_owner_for

TICKETS = 200
MARKER = "demo-ticket-0@demo.desk.example"
FIRST = ["Jane", "Lukas", "Amélie", "Priya", "Tomasz", "Sofia", "Jürgen", "Aoife", "Mateo", "Ingrid", "Kwame", "Yuki", "Olga", "Hamza", "Chloé"]
LAST = ["Roe", "Schneider", "Durand", "Nair", "Kowalski", "Rossi", "Müller", "Byrne", "García", "Olsen", "Mensah", "Tanaka", "Petrova", "Haddad", "Martin"]
MAILBOXES = ["mail.example", "post.example", "inbox.example", "web.example"]
TOPICS = [
    ("Copy of my personal data", "Hello,\n\nunder Article 15 GDPR I would like a copy of all personal data you hold about me.\n\nThank you"),
    ("Please delete my account", "Hi,\n\nI no longer use your service. Please delete my account and all data about me.\n\nRegards"),
    ("Wrong address on my invoices", "Hello,\n\nmy invoices still show my old address. Please correct it.\n\nBest"),
    ("Stop marketing emails", "Please stop sending me newsletters and offers. I never agreed to them."),
    ("Export of my order history", "Could you send me my order history in a machine-readable format (CSV or JSON)?"),
    ("Auskunft über meine Daten", "Guten Tag,\n\nbitte teilen Sie mir mit, welche Daten Sie über mich gespeichert haben.\n\nMit freundlichen Grüßen"),
    ("Login problem after password reset", "I reset my password but still cannot log in. Can you help?"),
    ("Question about a charge", "There is a charge on my card I do not recognise. Which order is it for?"),
]
REPLIES = [
    "Thank you, that answers my question.",
    "I have attached the form you asked for.",
    "Yes, please go ahead.",
    "It still does not work, see the screenshot.",
    "Danke, das hat geholfen.",
]
DESK_ANSWERS = [
    "Hello,\n\nthank you for your message. We have forwarded your request to the company responsible and will get back to you.",
    "Hello,\n\ncould you confirm your customer number so that we can find your records?",
    "Hello,\n\nthe change is done. Is there anything else we can do for you?",
]
NOTES = [
    "Forwarded to the controller's DPO.",
    "Waiting for the customer number.",
    "Checked: no marketing consent on file.",
    "Identity verified by reply address.",
]
# A 1x1 PNG and a tiny PDF: real file types for the inline/download paths.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c63f8cfc0f01f0005050201a5d8a1e20000000049454e44ae426082"
)
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def ascii_local(name: str) -> str:
    """A name as the local part of a demo address: transliterated (Jürgen -> jurgen, García -> garcia), lower case, letters only."""
    return "".join(ch for ch in anyascii(name).lower() if ch.isalnum())


def _message(session: Session, direction: str, at: dt.datetime, key_owner: int, **values: str | None) -> Message:
    msgid = values.pop("message_id", None)
    message = Message(
        direction=direction,
        key_owner=key_owner,
        flags=[],
        notes=[],
        is_auto_reply=False,
        created_at=at,
        message_id=msgid,
        message_id_bidx=message_ids.digest(session, msgid) if msgid else None,
    )
    for name, value in values.items():
        setattr(message, name, value)
    return message


def seed(session: Session, *, now: dt.datetime, count: int = TICKETS) -> Iterator[str]:
    """Create the demo tickets once (skipped when they exist); deterministic, so every newcomer sees the same desk.

    Rows are built directly and flushed together (every value still encrypted at the flush),
    with one audit event for the batch: demo data is not a person's change, and seeding
    through the services one event at a time took most of `demo seed`'s time.
    """
    if lookup.message_exists(session, MARKER):
        return
    rng = random.Random(20261121)
    by = Principal.system("demo seed")
    controller_ids: list[int | None] = [*session.scalars(select(Controller.id).order_by(Controller.id)), None]
    statuses = ["new", "open", "open", "waiting", "waiting", "closed", "closed", "closed"]
    made: list[Ticket] = []
    files: list[tuple[Message, tuple[str, str, bytes], dt.datetime]] = []
    for n in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        name = f"{first} {last}"
        email = f"{ascii_local(first)}.{ascii_local(last)}{n}@{rng.choice(MAILBOXES)}"
        subject, body = rng.choice(TOPICS)
        opened = now - dt.timedelta(minutes=rng.randint(10, 60 * 24 * 90))
        controller_id = rng.choice(controller_ids)
        owner = key_owner_for(controller_id)
        ticket = Ticket(controller_id=controller_id, key_owner=owner, status="new", reply_token=secrets.token_hex(10), created_at=opened, updated_at=opened)
        ticket.requester_name, ticket.requester_email, ticket.subject = name, email, subject
        first_message = _message(
            session,
            "inbound",
            opened,
            owner,
            body_text=body,
            reply_text=body,
            sender_name=name,
            sender_email=email,
            subject=subject,
            message_id=f"demo-ticket-{n}@demo.desk.example",
        )
        ticket.messages.append(first_message)
        if rng.random() < 0.25:
            files.append((first_message, rng.choice([("id-card.png", "image/png", PNG), ("form.pdf", "application/pdf", PDF)]), opened))
        at = opened
        for turn in range(rng.randint(0, 2)):
            at += dt.timedelta(minutes=rng.randint(5, 600))
            if turn % 2 == 0:
                text = rng.choice(DESK_ANSWERS)
                ticket.messages.append(
                    _message(session, "outbound", at, owner, body_text=text, subject=f"Re: {subject}", message_id=f"demo-out-{n}-{turn}@desk.example")
                )
            else:
                text = rng.choice(REPLIES)
                ticket.messages.append(
                    _message(
                        session,
                        "inbound",
                        at,
                        owner,
                        body_text=text,
                        reply_text=text,
                        sender_name=name,
                        sender_email=email,
                        message_id=f"demo-in-{n}-{turn}@demo.desk.example",
                    )
                )
        if rng.random() < 0.3:
            ticket.messages.append(_message(session, "note", at, owner, body_text=rng.choice(NOTES)))
        ticket.status = rng.choice(statuses)
        ticket.updated_at = at
        ticket.closed_at = at if ticket.status == "closed" else None
        made.append(ticket)
    session.add_all(made)
    session.flush()
    for ticket in made:
        ticket.reference = lookup.format_reference(ticket.created_at, ticket.id)
    for message, (filename, content_type, content), at in files:
        tickets.add_attachment(session, message, filename=filename, content_type=content_type, content=content, by=by, now=at)
    session.flush()
    total = sum(len(t.messages) for t in made)
    record(session, by=by, action="demo.tickets", target_type="ticket", details={"tickets": len(made), "messages": total, "attachments": len(files)}, now=now)
    yield f"tickets: {len(made)} demo tickets with {total} messages and {len(files)} attachments"
