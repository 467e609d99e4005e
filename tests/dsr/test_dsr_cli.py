"""`demo seed` requests in every state, `dsr list [--json]` and `dsr sweep` through the CLI."""

from __future__ import annotations

import datetime as dt
import json

from flask.testing import FlaskCliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.dsr import service as dsr_service
from app.dsr.models import Dsr
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
    dsr = dsr_service.create_from_ticket(
        session, ticket.id, dsr_service.DsrInput(types=["access", "erasure"], subject_email="cli@subject.example"), by=TEST_PRINCIPAL, now=utcnow()
    )
    result = runner.invoke(args=["dsr", "list", "--json"])
    assert result.exit_code == 0, result.output
    items = {i["reference"]: i for i in json.loads(result.output)}
    item = items[dsr.reference]
    assert item["types"] == ["access", "erasure"] and item["state"] == "awaiting_forward"
    assert item["controllers"] == [{"id": controller.id, "name": "Listed Controller Ltd"}]
    assert item["received_at"] and item["due_at"] and item["forwarded_at"] is None and item["pending_instructions"] == 0
    assert "cli@subject.example" not in result.output  # the listing names references, not people
    text = runner.invoke(args=["dsr", "list"])
    assert text.exit_code == 0 and str(dsr.reference) in text.output
    sweep = runner.invoke(args=["dsr", "sweep"])
    assert sweep.exit_code == 0 and sweep.output.startswith("rung ")
    bad = runner.invoke(args=["dsr", "list", "--state", "nonsense"])
    assert bad.exit_code != 0
