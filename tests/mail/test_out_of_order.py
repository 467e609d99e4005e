"""Mail reordered on the way (issue 11 item 3): a subject's follow-up reaches the desk before the original it answers.

The follow-up opens the ticket (and, to the privacy address, the request); the original, arriving later, joins that
ticket instead of opening a second ticket, a second request with a second 24-hour clock and a second acknowledgement.
Only mail from the same person joins: a stranger's forged References pull nothing into somebody else's ticket.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Sequence

import pytest
from flask import Flask
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from app.controllers.models import Controller
from app.deletion import service as deletion
from app.dsr.models import Dsr
from app.extensions import db
from app.mail.inbound import IngestOutcome, IngestSettings, ingest_message
from app.mail.models import OutboxEmail
from app.tickets.models import Message, Ticket
from app.tickets.referenced import MessageReference
from tests.deletion.support import OPERATOR, drain
from tests.factories import TEST_PRINCIPAL, make_controller, make_standing

SETTINGS = IngestSettings(support_address="support@desk.example", privacy_address="privacy@desk.example")
T0 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
SAM = "sam@reorder.example"


def mail(to: str, body: str, *, msgid: str, sender: str = f"Sam Poe <{SAM}>", subject: str = "Delete my data", names: Sequence[str] = ()) -> bytes:
    """A message; `names` are the Message-IDs it answers (In-Reply-To the last, References all of them)."""
    threading = f"In-Reply-To: <{names[-1]}>\r\nReferences: {' '.join(f'<{n}>' for n in names)}\r\n" if names else ""
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{msgid}>\r\n{threading}Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def ingest(session: Session, raw: bytes, minutes: int) -> IngestOutcome:
    return ingest_message(session, raw, settings=SETTINGS, by=TEST_PRINCIPAL, now=T0 + dt.timedelta(minutes=minutes))


def subject_tickets(session: Session, controller: Controller, email: str = SAM) -> list[Ticket]:
    return list(session.scalars(select(Ticket).where(Ticket.requester_email.matches(session, email, controller_id=controller.id)).order_by(Ticket.id)))


def subject_requests(session: Session, email: str = SAM) -> list[Dsr]:
    return list(session.scalars(select(Dsr).where(Dsr.subject_email.matches(session, email)).order_by(Dsr.id)))


def acknowledgements(session: Session, email: str = SAM) -> list[OutboxEmail]:
    return [a for a in session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "acknowledgement")) if a.to_addr == email]


def test_an_original_after_its_follow_up_joins_the_follow_ups_ticket_and_request(session: Session) -> None:
    # Given a controller whose standing instruction allows a neutral acknowledgement
    controller = make_controller(session, domains=["reorder.example"])
    make_standing(session, controller, now=T0)
    # When the subject's follow-up to the privacy address arrives first, and the original it answers seven minutes later
    follow_up = ingest(session, mail("privacy@desk.example", "Any news on my request?", msgid="f1@reorder.example", names=["o1@reorder.example"]), 0)
    original = ingest(session, mail("privacy@desk.example", "Please delete all my data.", msgid="o1@reorder.example"), 7)
    # Then the original joins the follow-up's ticket: one ticket, one request timed from the first arrival, one acknowledgement
    assert follow_up.new_ticket and follow_up.claim is not None and follow_up.claim.code == "dsr"
    assert (original.status, original.ticket_id, original.new_ticket, original.how) == ("stored", follow_up.ticket_id, False, "followed_up")
    assert original.claim is None
    [ticket] = subject_tickets(session, controller)
    [request] = subject_requests(session)
    assert request.ticket_id == ticket.id and request.received_at == T0 and request.due_at == T0 + dt.timedelta(hours=24)
    assert len(acknowledgements(session)) == 1
    # And the ticket shows both messages in the order they arrived
    assert [m.message_id for m in ticket.messages] == ["f1@reorder.example", "o1@reorder.example"]


def test_to_the_support_address_the_original_joins_the_follow_ups_ticket(session: Session) -> None:
    controller = make_controller(session, domains=["reorder.example"])
    raw = mail("support@desk.example", "Still waiting.", msgid="f2@reorder.example", subject="Re: Parcel", names=["o2@reorder.example"])
    follow_up = ingest(session, raw, 0)
    original = ingest(session, mail("support@desk.example", "Where is my parcel?", msgid="o2@reorder.example", subject="Parcel"), 3)
    assert (original.ticket_id, original.new_ticket, original.how) == (follow_up.ticket_id, False, "followed_up")
    [ticket] = subject_tickets(session, controller)
    assert len(ticket.messages) == 2 and subject_requests(session) == []


def test_a_strangers_forged_references_pull_nothing_in_and_the_original_joins_its_senders_follow_up(session: Session) -> None:
    # Given a stranger's message naming the subject's Message-ID first (forged), then the subject's own follow-up
    controller = make_controller(session, domains=["reorder.example"])
    forged = ingest(
        session, mail("privacy@desk.example", "Hi", msgid="x1@elsewhere.example", sender="Mallory <mallory@elsewhere.example>", names=["o3@reorder.example"]), 0
    )
    follow_up = ingest(session, mail("privacy@desk.example", "Any news?", msgid="f3@reorder.example", names=["o3@reorder.example"]), 1)
    # When the subject's original arrives
    original = ingest(session, mail("privacy@desk.example", "Please delete my data.", msgid="o3@reorder.example"), 5)
    # Then it joins the subject's own ticket, never the stranger's, which keeps only the stranger's message
    assert (original.ticket_id, original.new_ticket) == (follow_up.ticket_id, False)
    stranger = session.get(Ticket, forged.ticket_id)
    assert stranger is not None and [m.message_id for m in stranger.messages] == ["x1@elsewhere.example"]
    assert len(subject_tickets(session, controller)) == 1 and len(subject_requests(session)) == 1


def test_a_stranger_naming_a_message_leaves_its_sender_a_ticket_of_their_own(session: Session) -> None:
    # (A guard: the follow-up rule must not move mail into a ticket whose people did not write it.)
    controller = make_controller(session, domains=["reorder.example"])
    forged = ingest(
        session, mail("privacy@desk.example", "Hi", msgid="x4@elsewhere.example", sender="Mallory <mallory@elsewhere.example>", names=["o4@reorder.example"]), 0
    )
    original = ingest(session, mail("privacy@desk.example", "Please delete my data.", msgid="o4@reorder.example"), 5)
    assert original.new_ticket and original.ticket_id != forged.ticket_id and original.claim is not None and original.claim.code == "dsr"
    [ticket] = subject_tickets(session, controller)
    assert ticket.id == original.ticket_id


def test_the_original_delivered_twice_after_its_follow_up_is_a_duplicate_the_second_time(session: Session) -> None:
    controller = make_controller(session, domains=["reorder.example"])
    follow_up = ingest(session, mail("privacy@desk.example", "Any news?", msgid="f5@reorder.example", names=["o5@reorder.example"]), 0)
    raw = mail("privacy@desk.example", "Please delete my data.", msgid="o5@reorder.example")
    first, again = ingest(session, raw, 4), ingest(session, raw, 9)
    assert (first.status, first.ticket_id) == ("stored", follow_up.ticket_id)
    assert (again.status, again.ticket_id, again.message_pk) == ("duplicate", follow_up.ticket_id, first.message_pk)
    [ticket] = subject_tickets(session, controller)
    assert len(ticket.messages) == 2 and len(subject_requests(session)) == 1


def test_a_reply_to_a_reply_both_before_the_original_make_one_ticket(session: Session) -> None:
    # Given the subject's second follow-up (answering the first) arriving first, then the first, then the original
    controller = make_controller(session, domains=["reorder.example"])
    make_standing(session, controller, now=T0)
    second = ingest(session, mail("privacy@desk.example", "Hello again?", msgid="c6@reorder.example", names=["o6@reorder.example", "b6@reorder.example"]), 0)
    first = ingest(session, mail("privacy@desk.example", "Any news?", msgid="b6@reorder.example", names=["o6@reorder.example"]), 2)
    original = ingest(session, mail("privacy@desk.example", "Please delete my data.", msgid="o6@reorder.example"), 6)
    # Then all three are one ticket with one request from the first arrival and one acknowledgement
    assert first.ticket_id == original.ticket_id == second.ticket_id and not first.new_ticket and not original.new_ticket
    [ticket] = subject_tickets(session, controller)
    assert [m.message_id for m in ticket.messages] == ["c6@reorder.example", "b6@reorder.example", "o6@reorder.example"]
    [request] = subject_requests(session)
    assert request.received_at == T0 and len(acknowledgements(session)) == 1


def test_a_message_nobody_names_costs_no_statement_for_the_follow_up_check(session: Session) -> None:
    make_controller(session, domains=["reorder.example"])
    seen: list[str] = []
    listen = event.listens_for(session.connection(), "before_cursor_execute")(lambda *a: seen.append(a[2]))
    try:
        ingest(session, mail("support@desk.example", "Where is my parcel?", msgid="o7@reorder.example", subject="Parcel"), 0)
    finally:
        event.remove(session.connection(), "before_cursor_execute", listen)
    # The query naming the reverse index is the duplicate lookup, which carries the check (a Postgres insert may name it
    # too; the lookup runs twice when this process remembered another database's key: app.crypto.message_ids.lookup_with)
    naming = [s for s in seen if "message_references" in s and not s.lstrip().upper().startswith(("INSERT", "WITH"))]
    rechecks = [s for s in naming if "message_id_bidx" not in s]
    assert naming and len(naming) > len(rechecks), naming
    # On Postgres the sender's lock comes before the duplicate lookup (a concurrent ingest of the same sender:
    # test_a_follow_up_and_its_original_ingested_at_the_same_moment_open_one_ticket), so nothing is looked at twice
    locked = [n for n, s in enumerate(seen) if "pg_advisory_xact_lock" in s]
    assert locked == ([seen.index(naming[0]) - 1] if session.get_bind().dialect.name == "postgresql" else []), seen
    assert rechecks == [], rechecks


def test_deleting_a_ticket_deletes_the_reverse_index_of_its_messages(session: Session) -> None:
    controller = make_controller(session, domains=["reorder.example"])
    follow_up = ingest(session, mail("support@desk.example", "Still waiting.", msgid="f8@reorder.example", names=["o8@reorder.example"]), 0)
    named = select(func.count()).select_from(MessageReference).join(Message, Message.id == MessageReference.message_id)
    assert session.scalar(named.where(Message.ticket_id == follow_up.ticket_id)) == 1
    assert follow_up.ticket_id is not None and controller.id
    run = deletion.start(session, deletion.Authority("operator"), deletion.Scope.tickets((follow_up.ticket_id,)), "delete", by=OPERATOR, now=T0)
    drain(session, run.id)
    assert session.scalar(select(func.count()).select_from(MessageReference)) == 0
    # And the original arriving after its follow-up was deleted opens a ticket of its own
    original = ingest(session, mail("support@desk.example", "Where is my parcel?", msgid="o8@reorder.example"), 9)
    assert original.new_ticket


FOLLOW_UP = mail("support@desk.example", "Any news?", msgid="f9@reorder.example", names=["o9@reorder.example"])
ORIGINAL = mail("support@desk.example", "Where is my parcel?", msgid="o9@reorder.example")


@pytest.mark.parametrize(
    ("first_raw", "second_raw", "joined_by"),
    [(FOLLOW_UP, ORIGINAL, "followed_up"), (ORIGINAL, FOLLOW_UP, "in_reply_to")],
    ids=["follow-up-first", "original-first"],
)
def test_a_follow_up_and_its_original_ingested_at_the_same_moment_open_one_ticket(
    committed_app: Flask, first_raw: bytes, second_raw: bytes, joined_by: str
) -> None:
    # Given a controller, committed (two processes of `mail ingest` each have their own transaction)
    with committed_app.app_context():
        with db.session_scope() as setup:
            controller_id = make_controller(setup, domains=["reorder.example"]).id
        with db.session_scope() as warm:  # the desk has taken mail before: its keys exist (their first creation would queue the two)
            ingest(warm, mail("support@desk.example", "Hello", msgid="w9@reorder.example", sender="kim@reorder.example"), 0)
        # When one message's ingest is still in its transaction while the other's runs
        first = db.sessionmaker()
        opened = ingest(first, first_raw, 0)
        outcomes: list[IngestOutcome] = []

        def second() -> None:
            with committed_app.app_context(), db.session_scope() as other_session:
                outcomes.append(ingest(other_session, second_raw, 0))

        other = threading.Thread(target=second)
        other.start()
        time.sleep(1.0)
        assert other.is_alive()  # it waits for the first one's transaction (the sender's lock on Postgres, the write lock on SQLite)
        first.commit()
        first.close()
        other.join(timeout=30)
        # Then the second joins the first one's ticket: one ticket, not two
        [done] = outcomes
        assert (done.ticket_id, done.new_ticket, done.how) == (opened.ticket_id, False, joined_by)
        with db.session_scope() as check:
            controller = check.get_one(Controller, controller_id)
            assert [t.id for t in subject_tickets(check, controller)] == [opened.ticket_id]


def test_a_stranger_squatting_the_originals_id_between_follow_up_and_original_takes_nothing(session: Session) -> None:
    controller = make_controller(session, domains=["reorder.example"])
    # Given the subject's follow-up, then a stranger's message under the Message-ID the follow-up names
    follow_up = ingest(session, mail("support@desk.example", "Any news?", msgid="f6@reorder.example", names=["o6@reorder.example"]), 0)
    squat = ingest(session, mail("support@desk.example", "Hi", msgid="o6@reorder.example", sender="Mallory <mallory@elsewhere.example>"), 1)
    # When the subject's original arrives under its own (squatted) id
    original = ingest(session, mail("support@desk.example", "Where is my parcel?", msgid="o6@reorder.example"), 2)
    # Then the stranger has a ticket of their own, and the original joins the subject's follow-up, not the stranger's ticket
    assert squat.ticket_id != follow_up.ticket_id
    assert (original.status, original.ticket_id, original.how) == ("stored", follow_up.ticket_id, "followed_up")
    assert [t.id for t in subject_tickets(session, controller)] == [follow_up.ticket_id]


def test_an_original_named_first_in_a_long_references_chain_is_found(session: Session) -> None:
    controller = make_controller(session, domains=["reorder.example"])
    # Given a follow-up whose References start at the original (the thread's root) and go on for 200 more ids
    chain = ["o5@reorder.example", *(f"r{n}@reorder.example" for n in range(200))]
    follow_up = ingest(session, mail("support@desk.example", "Any news?", msgid="f5@reorder.example", names=chain), 0)
    # When the original arrives after it, it joins the follow-up's ticket
    original = ingest(session, mail("support@desk.example", "Where is my parcel?", msgid="o5@reorder.example"), 3)
    assert (original.ticket_id, original.how) == (follow_up.ticket_id, "followed_up")
    assert [t.id for t in subject_tickets(session, controller)] == [follow_up.ticket_id]


@pytest.mark.parametrize("follow_up_first", [True, False], ids=["follow-up-first", "original-first"])
def test_message_ids_written_without_angle_brackets_still_thread(session: Session, follow_up_first: bool) -> None:
    controller = make_controller(session, domains=["reorder.example"])
    # Given an original whose client wrote its Message-ID bare, and a follow-up naming it bare in In-Reply-To
    original = b"From: Sam Poe <sam@reorder.example>\r\nTo: support@desk.example\r\nSubject: Parcel\r\nMessage-ID: o4@reorder.example\r\n\r\nWhere?\r\n"
    follow_up = (
        b"From: Sam Poe <sam@reorder.example>\r\nTo: support@desk.example\r\nSubject: Re: Parcel\r\nMessage-ID: <f4@reorder.example>\r\n"
        b"In-Reply-To: o4@reorder.example\r\n\r\nAny news?\r\n"
    )
    first, second = (follow_up, original) if follow_up_first else (original, follow_up)
    opened = ingest(session, first, 0)
    joined = ingest(session, second, 3)
    # Then they share one ticket, in either order of arrival
    assert (joined.ticket_id, joined.new_ticket) == (opened.ticket_id, False)
    assert [t.id for t in subject_tickets(session, controller)] == [opened.ticket_id]
    # And the bare id is the message's own: the same bytes again are a no-op
    assert ingest(session, original, 5).status == "duplicate"
