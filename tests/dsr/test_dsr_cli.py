"""`demo seed` requests in every state, `dsr list [--json]` and `dsr sweep` through the CLI."""

from __future__ import annotations

import datetime as dt
import json

from flask.testing import FlaskCliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.dsr.models import Dsr
from app.dsr.requests import DsrInput, create_from_ticket
from tests.dsr.test_dsr_service import make_ticket
from tests.factories import TEST_PRINCIPAL, make_controller


def test_demo_seed_adds_requests_in_every_state_some_near_their_deadline(runner: FlaskCliRunner, session: Session) -> None:
    result = runner.invoke(args=["demo", "seed"])
    assert result.exit_code == 0, result.output
    assert "DSR history" in result.output
    states = set(session.scalars(select(Dsr.state)))
    assert states >= {"triage", "awaiting_forward", "forwarded", "instructed", "closed"}
    now = utcnow()
    open_unforwarded = list(session.scalars(select(Dsr).where(Dsr.state.in_(("triage", "awaiting_forward")))))
    assert any(dt.timedelta(0) < d.due_at - now <= dt.timedelta(hours=4) for d in open_unforwarded)
    assert any(d.missed_at is not None and d.missed_reason_ct is None for d in open_unforwarded)
    again = runner.invoke(args=["demo", "seed"])
    assert again.exit_code == 0 and "DSR DSR-" not in again.output  # idempotent


def test_dsr_list_json_and_sweep(runner: FlaskCliRunner, session: Session) -> None:
    controller = make_controller(session, name="Listed Controller Ltd")
    ticket = make_ticket(session, controller.id, "cli@subject.example")
    dsr = create_from_ticket(session, ticket.id, DsrInput(types=["access", "erasure"], subject_email="cli@subject.example"), by=TEST_PRINCIPAL, now=utcnow())
    result = runner.invoke(args=["dsr", "list", "--json"])
    assert result.exit_code == 0, result.output
    items = {i["reference"]: i for i in json.loads(result.output)}
    item = items[dsr.reference]
    assert item["types"] == ["access", "erasure"] and item["state"] == "awaiting_forward"
    assert item["controllers"] == [{"id": controller.id, "name": "Listed Controller Ltd"}]
    assert item["received_at"] and item["due_at"] and item["forwarded_at"] is None and item["pending_instructions"] == 0
    assert item["escalated_at"] is None and item["forwards"] == [{"controller_id": controller.id, "state": "pending"}]
    assert "cli@subject.example" not in result.output  # the listing names references, not people
    text = runner.invoke(args=["dsr", "list"])
    assert text.exit_code == 0 and str(dsr.reference) in text.output
    sweep = runner.invoke(args=["dsr", "sweep"])
    assert sweep.exit_code == 0 and sweep.output.startswith("rung ")
    bad = runner.invoke(args=["dsr", "list", "--state", "nonsense"])
    assert bad.exit_code != 0


def test_dsr_list_says_missed_for_a_request_past_due_unforwarded_and_keeps_the_old_json_key(runner: FlaskCliRunner, session: Session) -> None:
    # Given one request past its deadline, unforwarded and swept, and one still in time
    now = utcnow()
    late_ticket, fresh_ticket = make_ticket(session, None, "late@subject.example"), make_ticket(session, None, "fresh@subject.example")
    late_ticket.messages[0].created_at = now - dt.timedelta(hours=30)
    fresh_ticket.messages[0].created_at = now - dt.timedelta(hours=1)
    session.flush()
    late = create_from_ticket(session, late_ticket.id, DsrInput(types=["access"], subject_name="A. Subject"), by=TEST_PRINCIPAL, now=now)
    fresh = create_from_ticket(session, fresh_ticket.id, DsrInput(types=["access"], subject_name="A. Subject"), by=TEST_PRINCIPAL, now=now)
    sweep = runner.invoke(args=["dsr", "sweep"])
    assert sweep.exit_code == 0 and "missed 1" in sweep.output and "breach" not in sweep.output
    # When the requests are listed as JSON
    result = runner.invoke(args=["dsr", "list", "--json"])
    assert result.exit_code == 0, result.output
    items = {i["reference"]: i for i in json.loads(result.output)}
    # Then the new key says "missed", and the key before 0012 says the same for one release (CHANGELOG 2026-11-30)
    assert items[late.reference]["missed"] is True and items[late.reference]["sla_breached"] is True
    assert items[fresh.reference]["missed"] is False and items[fresh.reference]["sla_breached"] is False
    # And the text listing says MISSED on the late one only
    lines = {line.split()[0]: line for line in runner.invoke(args=["dsr", "list"]).output.splitlines()}
    assert "MISSED" in lines[str(late.reference)] and "MISSED" not in lines[str(fresh.reference)]
