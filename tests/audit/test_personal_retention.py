"""Retention category `audit_personal_parts`: a month's parts are shredded one second after the whole month is past
its period and not before, a controller hold keeps the month, and the chain verifies after (issue 14 items 1 and 7)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.audit.models import AuditEvent
from app.audit.personal import open_parts
from app.db import utcnow
from app.deletion.models import DeletionRun
from app.extensions import db
from app.principal import Principal
from app.retention import holds, policies, runner
from app.retention.models import RetentionRun
from tests.conftest import AuthActions, app_on_own_database
from tests.factories import make_controller
from tests.retention.support import SYSTEM, run_now

CATEGORY = "audit_personal_parts"
JAN = dt.datetime(2020, 1, 31, 23, 59, 59, tzinfo=dt.UTC)
FEB = dt.datetime(2020, 2, 1, tzinfo=dt.UTC)  # January's end: every part of January is at or before it
MAR_EVENT = dt.datetime(2020, 3, 10, 8, 0, tzinfo=dt.UTC)
PERIOD = dt.timedelta(days=2190)
SECOND = dt.timedelta(seconds=1)
STAFF = Principal.staff(7)


def _record(session: Session, controller_id: int | None, at: dt.datetime, value: str) -> AuditEvent:
    return audit.record(session, by=STAFF, action="test.parts", target_type="thing", controller_id=controller_id, personal={"who": value}, now=at)


def _values(session: Session, *events: AuditEvent) -> list[object]:
    session.expire_all()
    parts = open_parts(session, [(e.seq, e.personal_ct) for e in events])
    return [parts[e.seq].values if parts[e.seq].state == "readable" else parts[e.seq].shown() for e in events]


def _clock_run(session: Session, at: dt.datetime) -> RetentionRun:
    with time_machine.travel(at, tick=False):
        result = run_now(session, utcnow(), only_category=CATEGORY)
    run = session.get(RetentionRun, result.run_id)
    assert run is not None and run.state == "done", run and run.errors
    return run


def test_a_month_is_kept_one_second_before_its_period_ends_and_shredded_one_second_after(session: Session, client: FlaskClient, auth: AuthActions) -> None:
    controller = make_controller(session)
    jan = _record(session, controller.id, JAN, "january")
    mar = _record(session, controller.id, MAR_EVENT, "march")
    # One second before January's last instant is 2190 days old: every part reads
    before = _clock_run(session, FEB + PERIOD - SECOND)
    assert _values(session, jan, mar) == [{"who": "january"}, {"who": "march"}]
    assert before.counts.get(CATEGORY, {}).get("*", {}).get("due", 0) == 0
    # One second after: January's key is destroyed, March's is not
    after = _clock_run(session, FEB + PERIOD + SECOND)
    assert _values(session, jan, mar) == ["[shredded]", {"who": "march"}]
    assert after.counts[CATEGORY]["*"]["due"] == 1 and after.counts[CATEGORY]["*"]["held"] == 0
    engine = session.scalars(select(DeletionRun).where(DeletionRun.scope_kind == "records").order_by(DeletionRun.id.desc())).first()
    assert engine is not None and engine.state == "done"
    assert engine.report["stores"]["period_keys"]["audit_months_shredded"] == 1
    assert engine.report["stores"]["audit_events"]["personal_parts_shredded"] == 1
    # A later run finds nothing more to do
    assert _clock_run(session, FEB + PERIOD + 2 * SECOND).counts.get(CATEGORY, {}).get("*", {}).get("due", 0) == 0
    # The auditor's page shows the shredded part as such, the other one as it is
    auth.login("auditor")
    html = client.get("/audit/?action=test.parts").get_data(as_text=True)
    assert "[shredded]" in html and "who: march" in html and "january" not in html


def test_a_controller_hold_keeps_the_month_of_its_events_and_lifting_it_releases_them(session: Session) -> None:
    held, other = make_controller(session), make_controller(session)
    mine = _record(session, held.id, JAN, "held controller's")
    theirs = _record(session, other.id, JAN, "other controller's")
    hold = holds.place(session, kind="controller", basis="litigation", controller_id=held.id, until=None, by=SYSTEM, now=FEB)
    # The dry run says the month is held, and why
    with time_machine.travel(FEB + PERIOD + SECOND, tick=False):
        preview = runner.preview(session, only_category=CATEGORY, now=utcnow())
    assert [(p.due, p.held) for p in preview] == [(0, {f"hold {hold.id}: litigation": 1})]
    # A run leaves the month whole, the other controller's part included (one key covers both), and counts it held
    run = _clock_run(session, FEB + PERIOD + SECOND)
    assert _values(session, mine, theirs) == [{"who": "held controller's"}, {"who": "other controller's"}]
    assert run.counts[CATEGORY]["*"]["held"] == 1
    # Once the hold is lifted, the next run shreds it
    holds.lift(session, hold.id, by=SYSTEM, now=FEB + PERIOD + 2 * SECOND)
    _clock_run(session, FEB + PERIOD + 3 * SECOND)
    assert _values(session, mine, theirs) == ["[shredded]", "[shredded]"]


def test_a_longer_controller_override_keeps_the_months_of_its_events(session: Session) -> None:
    longer = make_controller(session)
    event = _record(session, longer.id, JAN, "kept longer")
    policies.change(session, CATEGORY, controller_id=longer.id, period_days=2200, action="delete", legal_basis="a test", max_days=3650, by=SYSTEM, now=FEB)
    _clock_run(session, FEB + PERIOD + SECOND)
    assert _values(session, event) == [{"who": "kept longer"}]
    _clock_run(session, FEB + dt.timedelta(days=2200) + SECOND)
    assert _values(session, event) == ["[shredded]"]


@pytest.fixture
def own_app(app: Flask, tmp_path: Path) -> Iterator[Flask]:
    with app_on_own_database(app, tmp_path, "auditretention", AUDIT_CHECKPOINT_PATH=str(tmp_path / "heads.log")) as private:
        yield private


def test_retention_run_then_audit_verify_on_a_committed_chain(own_app: Flask) -> None:
    # Given committed events with parts in January, a checkpoint of the head
    with own_app.app_context(), db.session_scope() as session:
        for i in range(3):
            audit.record(session, by=STAFF, action="test.parts", target_type="thing", target_id=i, personal={"who": f"person {i}"}, now=JAN)
    cli = own_app.test_cli_runner()
    assert cli.invoke(args=["audit", "checkpoint"]).exit_code == 0
    # When the operator's retention run goes one second past the month's period
    with time_machine.travel(FEB + PERIOD + SECOND, tick=False):
        ran = cli.invoke(args=["retention", "run", "--category", CATEGORY])
    assert ran.exit_code == 0, ran.output
    # Then the parts are shredded and the chain, checkpoint included, still verifies
    with own_app.app_context(), db.session_scope() as session:
        page = audit.search_events(session, audit.EventFilter(action="test.parts"))
        assert [e.personal.shown() for e in page.events if e.personal] == ["[shredded]"] * 3
    verified = cli.invoke(args=["audit", "verify", "--quiet"])
    assert verified.exit_code == 0 and verified.output.startswith("ok, "), verified.output
