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
from app.tickets.models import Ticket
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
