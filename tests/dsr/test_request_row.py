"""A new request: on Postgres the request, its forward and its history lines are one statement (app.dsr.request_row),
with the same rows, values and audit events as the ORM path (which SQLite always takes)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.crypto.cipher import key_id_of
from app.crypto.kept_active import settle_kept
from app.crypto.keys import PLATFORM, cache_for, data_keys, forget_keys, insert_generation
from app.dsr import request_row, requests
from app.dsr.models import Dsr, DsrEvent, DsrForward
from app.dsr.requests import DsrInput, create_dsr
from app.dsr.settings import DsrSettings
from app.tickets import service as tickets
from tests.factories import TEST_PRINCIPAL, make_controller, make_standing

NOW = dt.datetime(2026, 12, 1, 6, 0, tzinfo=dt.UTC)
RECEIVED = NOW - dt.timedelta(minutes=3)
DATA = DsrInput(types=["erasure", "access"], subject_email=" Zoe@Example.org ", subject_name="Zoë Roe", request_text="Delete everything, Zoë")


def _create(session: Session, ticket: tickets.Ticket) -> tuple[Dsr, list[str]]:
    session.flush()
    statements: list[str] = []
    engine = session.get_bind().engine

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        dsr = create_dsr(session, DATA, source="privacy_address", received_at=RECEIVED, ticket=ticket, message_pk=None, by=TEST_PRINCIPAL, now=NOW)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return dsr, statements


def _read_back(session: Session, dsr_id: int) -> dict[str, Any]:
    session.flush()
    session.expire_all()
    dsr = session.get(Dsr, dsr_id)
    assert dsr is not None
    columns = {c.name: getattr(dsr, c.key) for c in Dsr.__table__.columns if c.name not in ("id", "reference", "row_uid") and not c.name.endswith("_ct")}
    columns["subject_email_bidx"] = bytes(columns["subject_email_bidx"])
    plain = {name: getattr(dsr, name) for name in ("subject_email", "subject_name", "subject_identifiers", "request_text", "missed_reason")}
    forwards = [
        (f.controller_id, f.state, f.forwarded_at, f.message_id_bidx, f.outbox_ids, f.created_at)
        for f in session.scalars(select(DsrForward).where(DsrForward.dsr_id == dsr_id))
    ]
    lines = [(e.at, e.code, e.by_label, e.details) for e in session.scalars(select(DsrEvent).where(DsrEvent.dsr_id == dsr_id).order_by(DsrEvent.id))]
    audited = session.scalars(select(AuditEvent).where(AuditEvent.target_type == "dsr", AuditEvent.target_id == str(dsr_id)).order_by(AuditEvent.seq))
    audit = [(a.action, a.controller_id, a.details_json) for a in audited]
    return {"columns": columns, "plain": plain, "forwards": forwards, "lines": lines, "audit": audit, "reference": dsr.reference, "id": dsr.id}


@pytest.mark.parametrize("routed", [True, False])
def test_a_new_request_is_one_statement_on_postgres_with_the_rows_of_the_orm_path(session: Session, monkeypatch: pytest.MonkeyPatch, routed: bool) -> None:
    # Given a ticket of a controller (routed: one forward) or in triage (no controller: no forward)
    controller = make_controller(session)
    ticket = tickets.create_ticket(
        session,
        controller_id=controller.id if routed else None,
        requester_name="Zoë",
        requester_email="zoe@example.org",
        subject="Data",
        by=TEST_PRINCIPAL,
        now=NOW,
    )
    # When a request is recorded by the path of this database, and again by the ORM path
    fast, statements = _create(session, ticket)
    fast_id = fast.id
    assert [f.controller_id for f in fast.forwards] == ([controller.id] if routed else [])
    assert fast.subject_email == "Zoe@Example.org" and fast.reference == requests.format_reference(RECEIVED, fast_id)
    monkeypatch.setattr(requests, "insert_request", lambda *a, **k: None)
    slow, _ = _create(session, ticket)
    slow_id = slow.id
    # Then on Postgres the request, its forward and its lines were one statement (then the audit events), nothing left to flush
    writes = [s.lstrip().split()[0].upper() for s in statements if not s.lstrip().upper().startswith("SELECT") and "data_keys" not in s]
    if session.get_bind().dialect.name == "postgresql":
        assert writes == ["WITH", "INSERT"]
        assert not session.dirty or fast not in session.dirty
    # and both read back alike from the database, decrypted (values bound to their rows), with the same history and audit
    got, want = _read_back(session, fast_id), _read_back(session, slow_id)
    assert got["reference"] == requests.format_reference(RECEIVED, fast_id)
    for part in ("columns", "plain", "forwards", "lines", "audit"):
        assert got[part] == want[part], part
    assert got["plain"]["subject_email"] == "Zoe@Example.org" and got["plain"]["subject_name"] == "Zoë Roe"
    assert [line[1] for line in got["lines"]] == (["create", "route"] if routed else ["create"])


def test_sqlite_takes_the_orm_path(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        assert request_row.insert_request is not None
        return
    assert request_row.insert_request(session, {}, {}, forward_to=None, events=[("create", {})], by_label="x", now=NOW) is None


def _request(session: Session) -> tuple[Dsr, list[str]]:
    ticket = tickets.create_ticket(
        session, controller_id=None, requester_name="Zoë", requester_email="zoe@example.org", subject="Data", by=TEST_PRINCIPAL, now=NOW
    )
    return _create(session, ticket)


def test_a_later_request_is_written_under_the_kept_platform_key_checked_and_locked_by_its_statement(session: Session) -> None:
    if session.get_bind().dialect.name != "postgresql":
        return  # the one statement is Postgres only
    # Given a request written under the platform key (kept by this process), and a new transaction
    first, _ = _request(session)
    assert first.subject_email_ct is not None
    key_id = key_id_of(first.subject_email_ct, where="dsrs.subject_email_ct")
    forget_keys(session)
    # When another request is recorded: no statement of its own locks the platform key; the request's one statement does
    second, seen = _request(session)
    assert not [s for s in seen if "data_keys" in s and "FOR SHARE" in s and "INSERT INTO dsrs" not in s]
    written = [s for s in seen if "INSERT INTO dsrs" in s]
    assert len(written) == 1 and "key_ok" in written[0] and "FOR SHARE" in written[0]
    assert second.subject_email_ct is not None and key_id_of(second.subject_email_ct, where="x") == key_id
    assert cache_for(session).active[PLATFORM].id == key_id
    # And when a rotation retired that key since (a new generation active, the same index key), nothing is written
    # under it: the request goes under the new active key, once
    old = cache_for(session).active[PLATFORM]
    forget_keys(session)
    conn = session.connection()
    conn.execute(update(data_keys).where(data_keys.c.id == key_id).values(state="retired"))
    insert_generation(conn, cache_for(session).keyring, PLATFORM, old.generation + 1, index_key=old.index_key)
    before = session.scalar(select(func.count()).select_from(Dsr))
    third, seen = _request(session)
    # (the generation now kept by this process is rolled back with the test: forgotten, so later tests start clean)
    settle_kept(session, cache_for(session).active[PLATFORM], False)
    assert len([s for s in seen if "INSERT INTO dsrs" in s]) == 2
    assert third.subject_email_ct is not None and key_id_of(third.subject_email_ct, where="x") != key_id
    assert session.scalar(select(func.count()).select_from(Dsr)) == before + 1
    assert _read_back(session, third.id)["plain"]["subject_email"] == "Zoe@Example.org"


def test_the_standing_acknowledgement_read_by_the_requests_statement_is_what_acknowledge_asks(session: Session) -> None:
    # Given two controllers, one with a standing acknowledgement instruction
    yes, no = make_controller(session), make_controller(session)
    make_standing(session, yes, now=NOW)
    settings = DsrSettings("privacy@desk.example", "desk.example")
    for controller, acknowledged in ((yes, True), (no, False)):
        made = tickets.create_ticket(
            session, controller_id=controller.id, requester_name="Zoë", requester_email="zoe@example.org", subject="D", by=TEST_PRINCIPAL, now=NOW
        )
        data = DsrInput(types=["access"], subject_email=f"z{controller.id}@example.org")
        dsr = create_dsr(session, data, source="privacy_address", received_at=RECEIVED, ticket=made, by=TEST_PRINCIPAL, now=NOW)
        assert dsr.controller_ids == [controller.id]
        postgres = session.get_bind().dialect.name == "postgresql"
        # The request's statement read it (Postgres), once, and acknowledge asks no statement of its own for it
        seen: list[str] = []
        engine = session.get_bind().engine

        def count(_conn: object, _cursor: object, statement: str, *_args: object, seen: list[str] = seen) -> None:
            seen.append(statement)

        event.listen(engine, "before_cursor_execute", count)
        try:
            assert requests.acknowledge(session, dsr, settings=settings, by=TEST_PRINCIPAL, now=NOW) is acknowledged
        finally:
            event.remove(engine, "before_cursor_execute", count)
        # (the gate asks again when the acknowledgement is queued: that one names the source instruction)
        asked = [s for s in seen if "FROM dsr_standing_instructions" in s and "source_instruction_id" not in s]
        assert len(asked) == (0 if postgres else 1), asked
        assert request_row.standing_read(session, dsr.id, controller.id) is None  # used once
