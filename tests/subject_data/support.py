"""A subject with tickets, messages, attachments, raw originals, a forwarded DSR and a confirmed instruction."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.controllers.models import Controller
from app.crypto.fields import FIELDS
from app.dsr import instructions as dsr_instructions
from app.dsr.forward import forward
from app.dsr.models import Dsr
from app.dsr.requests import DsrInput, create_from_ticket
from app.dsr.settings import DsrSettings
from app.principal import Principal
from app.subject_data import service
from app.tickets import service as tickets
from app.tickets.models import Message, Ticket
from tests.factories import TEST_PRINCIPAL, make_controller, make_instruction

SETTINGS = DsrSettings(privacy_address="privacy@desk.example", msgid_domain="desk.example")
T0 = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
CANARY_EMAIL = "zebra.canary-7f3a@canary-subject.example"
CANARY_NAME = "Quentin Zebracanary"
CANARY_ID = "ACCT-99-ZEBRA-7F3A"
CANARIES = (CANARY_EMAIL.lower(), CANARY_NAME.lower(), CANARY_ID.lower())


@dataclass
class Scene:
    controller: Controller
    dsr: Dsr
    tickets: list[Ticket]
    bystander: Ticket


def raw_mail(n: int) -> bytes:
    return (
        f"From: {CANARY_NAME} <{CANARY_EMAIL}>\r\nTo: support@desk.example\r\nSubject: help {n}\r\n"
        f"Message-ID: <m{n}.{id(object())}@mail.example>\r\n\r\nHello, this is {CANARY_NAME}, account {CANARY_ID}.\r\n"
    ).encode()


def scene(session: Session, *, messages: int = 3, tickets_count: int = 2, controller: Controller | None = None, now: dt.datetime = T0) -> Scene:
    """The subject's tickets at one controller, a bystander's ticket they wrote into, a DSR forwarded to the controller."""
    controller = controller or make_controller(session, dsr_contacts=["dpo@ctl-subject.example"])
    made: list[Ticket] = []
    for t in range(tickets_count):
        ticket = tickets.create_ticket(
            session,
            controller_id=controller.id,
            requester_name=CANARY_NAME,
            requester_email=CANARY_EMAIL,
            subject=f"Invoice question from {CANARY_NAME}",
            by=TEST_PRINCIPAL,
            now=now,
        )
        for i in range(messages):
            message = tickets.add_message(
                session,
                ticket,
                tickets.MessageInput(
                    direction="inbound" if i % 2 == 0 else "outbound",
                    sender_name=CANARY_NAME if i % 2 == 0 else "Agent",
                    sender_email=CANARY_EMAIL if i % 2 == 0 else "agent@desk.example",
                    subject=f"Re: invoice {t}",
                    body_text=f"Dear desk, I am {CANARY_NAME} ({CANARY_EMAIL}), account {CANARY_ID}. Message {i}.",
                    body_html=f"<p>{CANARY_NAME} writes</p>" if i == 0 else None,
                    raw=raw_mail(t * 100 + i) if i % 2 == 0 else None,
                ),
                by=TEST_PRINCIPAL,
                now=now,
            )
            if i == 0:
                tickets.add_attachment(
                    session,
                    message,
                    filename=f"{CANARY_NAME} passport.txt",
                    content_type="text/plain",
                    content=f"passport of {CANARY_NAME} {CANARY_ID}".encode(),
                    by=TEST_PRINCIPAL,
                    now=now,
                )
        made.append(ticket)
    bystander = tickets.create_ticket(
        session,
        controller_id=controller.id,
        requester_name="Bea Bystander",
        requester_email="bea@bystander.example",
        subject="Order",
        by=TEST_PRINCIPAL,
        now=now,
    )
    tickets.add_message(
        session,
        bystander,
        tickets.MessageInput(direction="inbound", body_text="Where is my order?", sender_email="bea@bystander.example"),
        by=TEST_PRINCIPAL,
        now=now,
    )
    tickets.add_message(
        session,
        bystander,
        tickets.MessageInput(direction="inbound", body_text=f"Cc from {CANARY_NAME}: same problem", sender_email=CANARY_EMAIL, sender_name=CANARY_NAME),
        by=TEST_PRINCIPAL,
        now=now,
    )
    data = DsrInput(
        types=["erasure", "access"],
        subject_email=CANARY_EMAIL,
        subject_name=CANARY_NAME,
        subject_identifiers=CANARY_ID,
        request_text=f"I, {CANARY_NAME}, want my data erased.",
    )
    dsr = create_from_ticket(session, made[0].id, data, controller_ids=[controller.id], by=TEST_PRINCIPAL, now=now)
    forward(session, dsr.id, settings=SETTINGS, by=TEST_PRINCIPAL, now=now)
    return Scene(controller, dsr, made, bystander)


def instruct(session: Session, sc: Scene, decision: str, *, now: dt.datetime = T0) -> None:
    """The controller replies from its registered address and a privacy officer confirms `decision`."""
    instruction = make_instruction(
        session,
        sc.dsr,
        controller_id=sc.controller.id,
        sender_email="dpo@ctl-subject.example",
        reply_text=f"Please go ahead for {CANARY_NAME} ({CANARY_EMAIL}).",
        now=now,
    )
    dsr_instructions.confirm(session, sc.dsr.id, instruction.id, decision, by=TEST_PRINCIPAL, now=now)


def drain(session: Session, run_id: int, *, by: Principal = TEST_PRINCIPAL, now: dt.datetime = T0, limit: int = 1000) -> int:
    """Advance a run to its end in this session; returns the number of steps."""
    for n in range(1, limit):
        if service.step(session, run_id, by=by, now=now):
            return n
    raise AssertionError("run did not finish")


def decrypted_hits(session: Session, canaries: tuple[str, ...] = CANARIES) -> dict[str, bytes]:
    """Every encrypted field of every row, decrypted, that still mentions the subject: "table.field#id" -> its ciphertext as stored."""
    hits: dict[str, bytes] = {}
    for spec in FIELDS:
        for row in session.scalars(select(spec.model)):  # type: ignore[call-overload]
            value = getattr(row, spec.name)
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else (value or "")
            if any(c in text.lower() for c in canaries):
                hits[f"{spec.table}.{spec.name}#{row.id}"] = getattr(row, spec.column)
    return hits


# Issue 13: what the subject gave in their own messages, and a second address of theirs.
CANARY_SECOND = "q.zebra-second@canary-other.example"
CANARY_PHONE = "+49 151 2345 6789"
CANARY_PHONE_LOCAL = "0151 23456789"
CANARY_STREET = "Zebrastrasse 77"
CANARY_TOWN = "10115 Zebrahausen"
CANARY_IBAN = "DE89 3704 0044 0532 0130 00"
CANARY_MAILBOX = "zebra.canary-7f3a"
EVERY_CANARY = (
    *CANARIES,
    CANARY_SECOND,
    "+4915123456789",
    "151 2345 6789",
    "0151 23456789",
    CANARY_STREET.lower(),
    CANARY_TOWN.lower(),
    "de89370400440532013000",
    CANARY_IBAN.lower(),
    CANARY_MAILBOX,
    "zoe zebracanary",
)


@dataclass
class Everywhere:
    """Where the subject appears beyond their own tickets (issue 13 item 2)."""

    own_message: Message
    cc_ticket: Ticket
    quote: Message
    forward: Message
    note: Message
    signature: Message
    second_ticket: Ticket
    file_message: Message


def _other_ticket(session: Session, sc: Scene, who: str, subject: str, now: dt.datetime) -> Ticket:
    return tickets.create_ticket(
        session,
        controller_id=sc.controller.id,
        requester_name=who.title(),
        requester_email=f"{who}@others.example",
        subject=subject,
        by=TEST_PRINCIPAL,
        now=now,
    )


def _say(session: Session, ticket: Ticket, now: dt.datetime, **kw: object) -> Message:
    kw.setdefault("direction", "inbound")
    return tickets.add_message(session, ticket, tickets.MessageInput(**kw), by=TEST_PRINCIPAL, now=now)  # type: ignore[arg-type]


def everywhere(session: Session, sc: Scene, *, now: dt.datetime = T0) -> Everywhere:
    """The subject's phone, street and IBAN in their own message, and the subject in five other people's tickets."""
    own = _say(
        session,
        sc.tickets[0],
        now,
        sender_email=CANARY_EMAIL,
        sender_name=CANARY_NAME,
        message_id=f"{CANARY_MAILBOX}.1@canary-subject.example",
        body_text=f"Please call me on {CANARY_PHONE}.\n{CANARY_NAME}\n{CANARY_STREET}\n{CANARY_TOWN}\nIBAN {CANARY_IBAN}",
    )
    # (a) Cc'd on another customer's ticket (the Cc line), and that customer quoting them in a reply-all.
    cc_ticket = _other_ticket(session, sc, "carla", "Group booking", now)
    _say(session, cc_ticket, now, sender_email="carla@others.example", body_text="Booking for two.", recipients=["support@desk.example", CANARY_EMAIL])
    quote = _say(
        session,
        cc_ticket,
        now,
        sender_email="carla@others.example",
        body_text=f"Agreed.\n\n> On Monday {CANARY_NAME} <{CANARY_EMAIL}> wrote:\n> ring me: {CANARY_PHONE_LOCAL}\n> {CANARY_STREET}",
        recipients=[CANARY_EMAIL],
    )
    # A forwarded email of theirs inside someone else's ticket.
    fwd_ticket = _other_ticket(session, sc, "dora", "Fwd: complaint", now)
    forward = _say(
        session,
        fwd_ticket,
        now,
        sender_email="dora@others.example",
        body_text=f"---------- Forwarded message ----------\nFrom: {CANARY_NAME} <{CANARY_EMAIL}>\nMy IBAN is {CANARY_IBAN.replace(' ', '')}.",
    )
    # A staff note naming them (the diacritic form of the name), and another person's signature.
    note = _say(
        session, fwd_ticket, now, direction="note", sender_email="agent@desk.example", body_text="Same person as Zoë Zebracanary? see QUENTIN ZEBRACANARY"
    )
    sig_ticket = _other_ticket(session, sc, "emil", "Invoice", now)
    signature = _say(
        session, sig_ticket, now, sender_email="emil@others.example", body_text=f"Thanks.\n--\nEmil, assistant to {CANARY_NAME}", sender_name="Emil"
    )
    # (b) A ticket opened from the second address (entered by staff as another identifier).
    second = tickets.create_ticket(
        session,
        controller_id=sc.controller.id,
        requester_name="Q. Zebracanary",
        requester_email=CANARY_SECOND,
        subject="Other account",
        by=TEST_PRINCIPAL,
        now=now,
    )
    _say(session, second, now, sender_email=CANARY_SECOND, sender_name="Zoe Zebracanary", body_text=f"From my other address, phone {CANARY_PHONE}")
    # An attachment named after them on someone else's ticket.
    file_message = _say(session, sig_ticket, now, sender_email="emil@others.example", body_text=f"Attached the form of {CANARY_NAME}.")
    tickets.add_attachment(
        session, file_message, filename=f"{CANARY_NAME} form.pdf", content_type="application/pdf", content=b"%PDF-1.4", by=TEST_PRINCIPAL, now=now
    )
    dsr = session.get(Dsr, sc.dsr.id)
    assert dsr is not None
    dsr.subject_identifiers = f"{CANARY_ID}, {CANARY_SECOND}"
    dsr.request_text = f"I, {CANARY_NAME}, want my data erased. Reach me at {CANARY_PHONE}, {CANARY_STREET}."
    session.flush()
    return Everywhere(own, cc_ticket, quote, forward, note, signature, second, file_message)
