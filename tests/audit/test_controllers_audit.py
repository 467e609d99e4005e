"""Every change to a controller is audit-logged in the same transaction, with counts and never the addresses."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.controllers.models import Controller
from app.controllers.service import ControllerInput, create_controller, update_controller
from app.db import utcnow
from app.extensions import db
from app.principal import Principal
from tests.factories import make_controller

STAFF = Principal.staff(42)


def _events(session: Session, controller_id: int) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.controller_id == controller_id).order_by(AuditEvent.seq)))


def test_creating_a_controller_records_counts_not_addresses(session: Session) -> None:
    controller = make_controller(session, dsr_contacts=["dpo@acme.example", "privacy@acme.example"], breach_contacts=["ciso@acme.example"])
    [event] = _events(session, controller.id)
    assert (event.action, event.target_type, event.target_id) == ("controller.create", "controller", str(controller.id))
    assert event.details == {"contacts": {"dsr": 2, "breach": 1, "subprocessor": 0}, "domains": 1, "identifiers": 0}
    assert "@" not in event.details_json and "acme" not in event.details_json


def test_updating_a_controller_records_which_fields_changed(session: Session) -> None:
    controller = make_controller(session, name="Globex", dsr_contacts=["dpo@globex.example"], domains=["globex.example"])
    data = ControllerInput(name="Globex", dsr_contacts=["dpo@globex.example", "legal@globex.example"], domains=["globex.example"], identifiers=["G-1"])
    update_controller(session, controller.id, data, by=STAFF, now=utcnow())
    event = _events(session, controller.id)[-1]
    assert event.action == "controller.update" and (event.actor_kind, event.actor_id) == ("staff", 42)
    assert event.details["changed"] == ["contacts", "identifiers"]
    assert event.details["contacts"] == {"dsr": 2, "breach": 0, "subprocessor": 0}
    assert "globex" not in event.details_json


def test_a_rolled_back_controller_change_leaves_no_event(committed_app: Flask) -> None:
    data = ControllerInput(name="Initech", dsr_contacts=["dpo@initech.example"])
    with committed_app.app_context():
        # Given a change that fails after the service has flushed it and its event
        with pytest.raises(RuntimeError), db.session_scope() as session:
            create_controller(session, data, by=STAFF, now=utcnow())
            assert session.scalar(select(func.count()).select_from(AuditEvent)) == 1
            raise RuntimeError("the edge fails before commit")
        # Then neither the controller nor its event exists
        with db.session_scope() as session:
            assert session.scalar(select(func.count()).select_from(Controller)) == 0
            assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0
        # And a committed change keeps exactly its event, first in the chain
        with db.session_scope() as session:
            create_controller(session, data, by=STAFF, now=utcnow())
        with db.session_scope() as session:
            [event] = session.scalars(select(AuditEvent)).all()
            assert (event.seq, event.action) == (1, "controller.create")
