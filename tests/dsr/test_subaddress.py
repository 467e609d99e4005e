"""Issue 12 item 4: a sub-address (`+tag`, any case) is the same person for the instruction gate and for routing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.addresses import mailbox
from app.crypto.cipher import blind_index
from app.dsr.gate import InstructionRequired
from app.dsr.models import Dsr
from app.dsr.requests import DsrInput, create_from_ticket
from app.dsr.routing import controllers_of_subject
from app.extensions import db
from app.mail.outbox import enqueue_email
from app.tickets import service as tickets
from app.tickets.models import Ticket
from tests.conftest import app_on_own_database
from tests.factories import TEST_PRINCIPAL, make_controller

T0 = dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("Jane+News@Example.ORG", "jane@example.org"),
        (" jane@example.org ", "jane@example.org"),
        ("jane+a+b@example.org", "jane@example.org"),
        ("+only@example.org", "+only@example.org"),
    ],
)
def test_mailbox_drops_case_and_tag(raw: str, key: str) -> None:
    assert mailbox(raw) == key


def test_the_index_of_a_tagged_address_is_the_mailbox_index() -> None:
    key = b"k" * 32
    assert blind_index(key, "email", "Subject+Tag@Mail.example") == blind_index(key, "email", "subject@mail.example")


def _ticket(session: Session, controller_id: int, email: str) -> Ticket:
    return tickets.create_ticket(session, controller_id=controller_id, requester_name="Sam", requester_email=email, subject="Hello", by=TEST_PRINCIPAL, now=T0)


@pytest.mark.parametrize(("open_as", "reply_to"), [("subject@mail.example", "Subject+shop@mail.example"), ("subject+x@mail.example", "SUBJECT@mail.example")])
def test_the_gate_refuses_a_reply_to_another_form_of_the_subjects_address(session: Session, open_as: str, reply_to: str) -> None:
    controller = make_controller(session)
    # Given an open request from one form of the address
    ticket = _ticket(session, controller.id, open_as)
    create_from_ticket(session, ticket.id, DsrInput(types=["access"], subject_email=open_as), by=TEST_PRINCIPAL, now=T0)
    # When staff answer another ticket that came from another form of it, without an instruction
    other = _ticket(session, controller.id, reply_to)
    with pytest.raises(InstructionRequired):
        enqueue_email(
            session,
            to=reply_to,
            subject="Re: Hello",
            body_text="Here is what you asked.",
            kind="reply",
            msgid_domain="desk.example",
            related_type="ticket",
            related_id=other.id,
            by=TEST_PRINCIPAL,
            now=T0,
        )


def test_routing_finds_the_controller_of_a_tagged_address(session: Session) -> None:
    controller = make_controller(session)
    _ticket(session, controller.id, "pat+orders@mail.example")
    assert controllers_of_subject(session, "Pat@mail.example") == {controller.id}


def test_migration_0016_reindexes_tagged_addresses_written_before_it(app: Flask, tmp_path: Path) -> None:
    from app import migrations

    with app_on_own_database(app, tmp_path, "mailbox") as own:
        with own.app_context(), db.session_scope() as session:
            controller = make_controller(session)
            tagged = _ticket(session, controller.id, "lee+x@mail.example")
            plain = _ticket(session, controller.id, "kim@mail.example")
            session.flush()
            ids = (tagged.id, plain.id, controller.id)
        with own.app_context():
            # Given the schema back at 0015 and the index as 0015 computed it (lowercase, tag kept)
            url = own.config["DATABASE_URL"]
            with db.session_scope() as session:
                from app.crypto.keys import cache_for, find_index_key, owner_of

                index_key = find_index_key(session.connection(), cache_for(session), owner_of(ids[2]))
                assert index_key is not None
            db.state(own).engine.dispose()
            migrations.downgrade(url, "0015")
            import hashlib
            import hmac

            legacy = hmac.new(index_key, b"email\x00lee+x@mail.example", hashlib.sha256).digest()
            with db.state(own).engine.begin() as conn:
                size = len(conn.execute(text("SELECT requester_email_bidx FROM tickets WHERE id = :i"), {"i": ids[0]}).scalar_one())
                conn.execute(text("UPDATE tickets SET requester_email_bidx = :b WHERE id = :i"), {"b": legacy[:size], "i": ids[0]})
            # When the migration runs (as `flask db upgrade` does, inside the app)
            migrations.upgrade(url)
            # Then the tagged row matches its mailbox, the other row is untouched
            with db.session_scope() as session:
                found = session.scalars(select(Ticket.id).where(Ticket.requester_email.matches(session, "LEE@mail.example", controller_id=ids[2]))).all()
                assert found == [ids[0]]
                assert session.scalars(select(Ticket.id).where(Ticket.requester_email.matches(session, "kim@mail.example", controller_id=ids[2]))).all() == [
                    ids[1]
                ]
    _ = Dsr
