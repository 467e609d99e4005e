"""Quarantined mail and delivered outbox payloads: each boundary, holds that keep them, the ledger, the dry run, the .eml copies."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.blobs.models import Blob
from app.deletion.models import DeletionRun
from app.mail.models import OutboxEmail
from app.mail.outbox_settings import OutboundSettings
from app.mail.quarantine import QuarantinedMessage
from app.mail.transport import FileTransport
from app.retention import holds
from app.subject_data import service as subject_service
from app.subject_data import setup as subject_data_setup
from tests.deletion.support import make_tickets, remaining
from tests.factories import make_controller
from tests.retention.records import SECOND, clock_preview, clock_run, ledger, quarantined, sent_email
from tests.retention.support import SYSTEM, close_at
from tests.subject_data.support import CANARY_EMAIL, drain, instruct, scene

RECEIVED = dt.datetime(2025, 3, 3, 8, 0, tzinfo=dt.UTC)
QUARANTINE = dt.timedelta(days=30)
PAYLOAD = dt.timedelta(days=90)


@pytest.fixture
def file_app(app: Flask) -> Flask:
    """The test app, its file outbox the one the engine deletes copies from (the registry is per process: the
    last app created registered its own folder)."""
    subject_data_setup.register(app)
    return app


def _eml(app: Flask, row: OutboxEmail) -> Path:
    transport = OutboundSettings.from_config(app.config).transport
    assert isinstance(transport, FileTransport)
    return transport.path_for(row.message_id or "")


# ---- quarantined mail -------------------------------------------------------------------------------------


def test_quarantined_mail_goes_one_second_after_30_days_with_its_original(session: Session) -> None:
    item = quarantined(session, "stranger@nowhere.example", RECEIVED)
    blob_id, item_id = item.raw_blob_id, item.id
    released = quarantined(session, "friend@nowhere.example", RECEIVED, n=1)
    released.state, released.ticket_id = "released", None  # an officer released it: it is a ticket's message now
    released_id = released.id
    session.flush()
    # One second before the boundary: the dry run and the run keep it
    assert [(li.controller_id, li.due) for li in clock_preview(session, RECEIVED + QUARANTINE - SECOND, "quarantined_mail")] == [(None, 0)]
    clock_run(session, RECEIVED + QUARANTINE - SECOND, only_category="quarantined_mail")
    session.expire_all()
    assert session.get(QuarantinedMessage, item_id) is not None
    # One second after: the dry run counts it, the run deletes the row and its encrypted original
    at = RECEIVED + QUARANTINE + SECOND
    [line] = clock_preview(session, at, "quarantined_mail")
    assert (line.controller_id, line.due, line.held, line.unit) == (None, 1, {}, "quarantined message(s)")
    result = clock_run(session, at, only_category="quarantined_mail")
    session.expire_all()
    assert session.get(QuarantinedMessage, item_id) is None and session.get(Blob, blob_id) is None
    assert session.get(QuarantinedMessage, released_id) is not None  # released mail is the ticket's, not quarantine's
    counts = ledger(session, result.run_id)["quarantined_mail"]["*"]
    assert (counts["due"], counts["deleted"], counts["held"]) == (line.due, 1, 0)


def test_a_controller_hold_keeps_quarantined_mail_from_its_domains_and_lifting_releases_it(session: Session) -> None:
    controller = make_controller(session, domains=["held-sender.example"])
    from_controller = quarantined(session, "clerk@mail.held-sender.example", RECEIVED).id
    elsewhere = quarantined(session, "nobody@elsewhere.example", RECEIVED, n=1).id
    hold = holds.place(session, kind="controller", controller_id=controller.id, basis="litigation", until=None, by=SYSTEM, now=RECEIVED)
    at = RECEIVED + QUARANTINE + SECOND
    # The dry run: the desk's line, one due, one kept by the controller's hold (the sender is at a subdomain of its domain)
    [line] = clock_preview(session, at, "quarantined_mail")
    assert (line.controller_id, line.due, line.held) == (None, 1, {f"hold {hold.id}: litigation": 1})
    result = clock_run(session, at, only_category="quarantined_mail")
    session.expire_all()
    assert session.get(QuarantinedMessage, from_controller) is not None and session.get(QuarantinedMessage, elsewhere) is None
    counts = ledger(session, result.run_id)["quarantined_mail"]["*"]
    assert (counts["due"], counts["deleted"], counts["held"]) == (2, 1, 1)
    # Lifting the hold releases it: the next run takes it
    holds.lift(session, hold.id, by=SYSTEM, now=at)
    clock_run(session, at + SECOND, only_category="quarantined_mail")
    session.expire_all()
    assert session.get(QuarantinedMessage, from_controller) is None


def test_a_subject_hold_keeps_quarantined_mail_the_subject_sent_from_the_controllers_domain(session: Session) -> None:
    controller = make_controller(session, domains=["shop.example"])
    mine = quarantined(session, "Jo@Shop.example", RECEIVED).id
    theirs = quarantined(session, "other@shop.example", RECEIVED, n=1).id
    hold = holds.place(
        session,
        kind="subject",
        controller_id=controller.id,
        subject_email="jo@shop.example",
        basis="aml_kyc",
        until=RECEIVED + dt.timedelta(days=400),
        by=SYSTEM,
        now=RECEIVED,
    )
    at = RECEIVED + QUARANTINE + SECOND
    [line] = clock_preview(session, at, "quarantined_mail")
    assert (line.due, line.held) == (1, {f"hold {hold.id}: aml_kyc": 1})
    clock_run(session, at, only_category="quarantined_mail")
    session.expire_all()
    assert session.get(QuarantinedMessage, mine) is not None and session.get(QuarantinedMessage, theirs) is None
    # The hold's end date passing releases it: the next run takes it
    clock_run(session, RECEIVED + dt.timedelta(days=400) + SECOND, only_category="quarantined_mail")
    session.expire_all()
    assert session.get(QuarantinedMessage, mine) is None


# ---- delivered outbox payloads ----------------------------------------------------------------------------


def test_a_delivered_payload_goes_one_second_after_90_days_the_record_and_not_the_eml_stays(file_app: Flask, session: Session) -> None:
    app = file_app
    controller = make_controller(session)
    row = sent_email(session, app, controller, "reader@customer.example", RECEIVED, related_type="note", related_id=1)
    queued = sent_email(session, None, controller, "later@customer.example", RECEIVED)
    queued.state, queued.sent_at = "failed", None
    session.flush()
    eml, recipient_hash = _eml(app, row), row.to_addr_bidx
    assert eml.exists() and recipient_hash is not None
    clock_run(session, RECEIVED + PAYLOAD - SECOND, only_category="outbox_payloads")
    session.expire_all()
    kept = session.get(OutboxEmail, row.id)
    assert kept is not None and (kept.body_text or "").startswith("Dear reader") and kept.payload_deleted_at is None and eml.exists()
    at = RECEIVED + PAYLOAD + SECOND
    line = next(li for li in clock_preview(session, at, "outbox_payloads") if li.controller_id == controller.id)
    assert (line.due, line.held) == (1, {})
    result = clock_run(session, at, only_category="outbox_payloads")
    session.expire_all()
    purged = session.get(OutboxEmail, row.id)
    assert purged is not None
    # The payload is gone (bodies, the Message-IDs it answered, the file copy) ...
    assert "reader" not in (purged.body_text or "") and purged.body_html is None and purged.in_reply_to is None and purged.payload_deleted_at == at
    assert not eml.exists()
    # ... the record of sending stays: the recipient as its keyed hash only, state, time, subject
    assert (purged.to_addr, purged.to_addr_bidx, purged.state, purged.sent_at, purged.subject) == (
        "erased@erased.invalid",
        recipient_hash,
        "sent",
        RECEIVED,
        "About your request",
    )
    # A failed email is not a delivered one: its payload is the ticket's business
    failed = session.get(OutboxEmail, queued.id)
    assert failed is not None and (failed.body_text or "").startswith("Dear later")
    counts = ledger(session, result.run_id)["outbox_payloads"][str(controller.id)]
    assert (counts["due"], counts["deleted"], counts["held"]) == (1, 1, 0)
    engine = session.scalars(select(DeletionRun).where(DeletionRun.scope_kind == "records")).one()
    assert engine.report["stores"]["outbox_files"] == {"files_deleted": 1}
    # Nothing twice: the next run finds nothing due
    again = clock_run(session, at + SECOND, only_category="outbox_payloads")
    assert ledger(session, again.run_id) == {}


def test_holds_keep_payloads_of_their_controller_ticket_and_subject_and_lifting_releases_them(session: Session) -> None:
    held_controller = make_controller(session)
    other = make_controller(session)
    made = make_tickets(session, other, 1, messages=1, now=RECEIVED)
    by_controller = sent_email(session, None, held_controller, "a@customer.example", RECEIVED)
    by_ticket = sent_email(session, None, other, "b@customer.example", RECEIVED, related_type="ticket", related_id=made.ticket_ids[0])
    by_subject = sent_email(session, None, other, "C@Customer.example", RECEIVED)
    free = sent_email(session, None, other, "d@customer.example", RECEIVED)
    placed = [
        holds.place(
            session, kind="controller", controller_id=held_controller.id, basis="accounting", until=RECEIVED + dt.timedelta(days=200), by=SYSTEM, now=RECEIVED
        ),
        holds.place(session, kind="ticket", ticket_id=made.ticket_ids[0], basis="litigation", until=None, by=SYSTEM, now=RECEIVED),
        holds.place(
            session, kind="subject", controller_id=other.id, subject_email="c@customer.example", basis="litigation", until=None, by=SYSTEM, now=RECEIVED
        ),
    ]
    at = RECEIVED + PAYLOAD + SECOND
    lines = {li.controller_id: li for li in clock_preview(session, at, "outbox_payloads")}
    assert (lines[held_controller.id].due, sum(lines[held_controller.id].held.values())) == (0, 1)
    assert (lines[other.id].due, sum(lines[other.id].held.values())) == (1, 2)
    result = clock_run(session, at, only_category="outbox_payloads")
    session.expire_all()
    bodies = {
        r.id: r.payload_deleted_at
        for r in session.scalars(select(OutboxEmail).where(OutboxEmail.id.in_([by_controller.id, by_ticket.id, by_subject.id, free.id])))
    }
    assert bodies == {by_controller.id: None, by_ticket.id: None, by_subject.id: None, free.id: at}
    counts = ledger(session, result.run_id)["outbox_payloads"]
    held_by = {f"hold {placed[1].id}: litigation": 1, f"hold {placed[2].id}: litigation": 1}
    assert counts[str(held_controller.id)]["held"] == 1 and counts[str(other.id)] | {"changed": 0} == {
        "due": 3,
        "deleted": 1,
        "held": 2,
        "changed": 0,
        "held_by": held_by,
    }
    for hold in placed:
        holds.lift(session, hold.id, by=SYSTEM, now=at)
    clock_run(session, at + SECOND, only_category="outbox_payloads")
    session.expire_all()
    assert all(
        r.payload_deleted_at is not None
        for r in session.scalars(select(OutboxEmail).where(OutboxEmail.id.in_([by_controller.id, by_ticket.id, by_subject.id])))
    )


def test_deleting_a_ticket_deletes_the_eml_copy_of_its_sent_reply(file_app: Flask, session: Session) -> None:
    app = file_app
    # Given a closed ticket whose reply went out through the file outbox
    controller = make_controller(session)
    made = make_tickets(session, controller, 1, messages=1, now=RECEIVED)
    reply = session.scalars(select(OutboxEmail).where(OutboxEmail.related_id == made.ticket_ids[0], OutboxEmail.related_type == "ticket")).one()
    written = sent_email(session, app, controller, "requester0@customer.example", RECEIVED, related_type="ticket", related_id=made.ticket_ids[0])
    reply.state, reply.sent_at = "sent", RECEIVED
    close_at(session, made.ticket_ids, RECEIVED)
    eml = _eml(app, written)
    assert eml.exists()
    # When the ticket's content is past its period
    clock_run(session, RECEIVED + dt.timedelta(days=365) + SECOND, only_category="closed_ticket_content")
    session.expire_all()
    # Then the outbox rows went and so did the file copy on disk
    assert remaining(session, made.ticket_ids)["outbox"] == 0
    assert not eml.exists()


def test_an_erasure_takes_the_recipient_hash_a_deleted_payload_kept(session: Session) -> None:
    # Given a delivered email to the subject whose payload retention deleted (its record keeps the recipient's hash)
    controller = make_controller(session, dsr_contacts=["dpo@ctl-subject.example"])
    row = sent_email(session, None, controller, CANARY_EMAIL, RECEIVED)  # before the request: the gate lets it go
    sc = scene(session, controller=controller, now=RECEIVED)
    at = RECEIVED + PAYLOAD + SECOND
    clock_run(session, at, only_category="outbox_payloads")
    session.expire_all()
    kept = session.get(OutboxEmail, row.id)
    assert kept is not None and kept.payload_deleted_at == at and kept.to_addr_bidx is not None
    # When the controller instructs the subject's erasure
    instruct(session, sc, "erase", now=at)
    run = subject_service.start(session, sc.dsr.id, sc.controller.id, "erase", by=SYSTEM, now=at)
    drain(session, run.id, now=at)
    # Then the hash goes too: nothing of the subject is left on the record of sending
    session.expire_all()
    erased = session.get(OutboxEmail, row.id)
    assert erased is not None and erased.to_addr_bidx is None and erased.to_addr == "erased@erased.invalid"
