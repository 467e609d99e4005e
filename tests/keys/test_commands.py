"""`flask --app wsgi keys status | keys rotate [--reencrypt]` as an operator sees them."""

from __future__ import annotations

from flask.testing import FlaskCliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.controllers.models import ControllerContact
from app.crypto.keys import data_keys
from tests.factories import make_controller


def test_status_rotate_and_reencrypt(runner: FlaskCliRunner, session: Session) -> None:
    # Given a controller with two encrypted contact addresses
    c = make_controller(session, dsr_contacts=["one@status.example", "two@status.example"])
    session.flush()
    old_keys = set(session.execute(select(data_keys.c.id).where(data_keys.c.owner == f"controller:{c.id}")).scalars())
    # When the operator asks for the status
    status = runner.invoke(args=["keys", "status"])
    # Then it lists the current version with its keys and values, and the encrypted columns
    assert status.exit_code == 0, status.output
    assert "current master key version: 1" in status.output
    assert "controller_contacts.email_ct" in status.output
    line = next(x for x in status.output.splitlines() if x.startswith("v1\t"))
    assert "current" in line
    # When keys are re-wrapped under the same version, nothing moves
    rotate = runner.invoke(args=["keys", "rotate"])
    assert rotate.exit_code == 0 and "0 data keys re-wrapped" in rotate.output
    # When every value is re-encrypted
    full = runner.invoke(args=["keys", "rotate", "--reencrypt", "--batch-size", "1"])
    assert full.exit_code == 0, full.output
    assert "re-encryption finished" in full.output
    # Then the controller has a new data key, the old one is gone, and the addresses still read
    session.expire_all()
    new_keys = set(session.execute(select(data_keys.c.id).where(data_keys.c.owner == f"controller:{c.id}")).scalars())
    assert new_keys and not (new_keys & old_keys)
    emails = sorted(x.email or "" for x in session.scalars(select(ControllerContact).where(ControllerContact.controller_id == c.id)))
    assert emails == ["one@status.example", "two@status.example"]
    actions = set(session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("keys.%"))))
    assert {"keys.rewrap", "keys.reencrypt.start", "keys.reencrypt.done"} <= actions


def test_bad_input_is_a_one_line_usage_error(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["keys", "rotate", "--batch-size", "0"])
    assert result.exit_code == 2
    assert "--batch-size" in result.output
