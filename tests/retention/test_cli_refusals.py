"""`retention hold add`, `policy set`, `policy withdraw` refuse bad input with one line (exit 2) and change nothing (issue 14 review)."""

from __future__ import annotations

import getpass

import pytest
from flask.testing import FlaskCliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.db import utcnow
from app.retention import policies
from app.retention.models import RetentionHold, RetentionPolicy
from app.retention.periods import DEFAULTS
from tests.factories import make_controller

Counts = tuple[int, int, int]


def _counts(session: Session) -> Counts:
    session.expire_all()
    return (
        int(session.scalar(select(func.count()).select_from(RetentionHold)) or 0),
        int(session.scalar(select(func.count()).select_from(RetentionPolicy)) or 0),
        int(session.scalar(select(func.count()).select_from(AuditEvent)) or 0),
    )


def _refused(runner: FlaskCliRunner, session: Session, args: list[str], message: str) -> None:
    before = _counts(session)
    result = runner.invoke(args=["retention", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(error_lines) == 1, result.output
    assert _counts(session) == before


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        ("", "needs the subject's email address"),
        ("   ", "needs the subject's email address"),
        ("notanemail", "not a valid email address"),
        ("a" * 3000, "longer than 254 characters"),
    ],
)
def test_a_subject_hold_needs_a_valid_address_never_the_whole_controller(runner: FlaskCliRunner, session: Session, subject: str, message: str) -> None:
    controller = make_controller(session)
    session.commit()
    args = ["hold", "add", "--subject", subject, "--controller", str(controller.id), "--basis", "litigation", "--until", "2027-01-01"]
    _refused(runner, session, args, message)


def test_unknown_controllers_and_tickets_are_named(runner: FlaskCliRunner, session: Session) -> None:
    until = ["--basis", "litigation", "--until", "2027-01-01"]
    _refused(runner, session, ["hold", "add", "--ticket", "99999999999999999", *until], "no ticket 99999999999999999")
    _refused(runner, session, ["hold", "add", "--ticket", "T-2026-999999", *until], "no ticket T-2026-999999")
    _refused(runner, session, ["hold", "add", "--controller", "999", *until], "no controller 999")
    _refused(runner, session, ["policy", "set", "requester_identity", "--days", "30", "--basis", "contract", "--controller", "999"], "no controller 999")


@pytest.mark.parametrize(
    ("until", "message"),
    [("9999-12-31", "2200 or earlier"), ("2201-01-01", "2200 or earlier"), ("31.12.2027", "YYYY-MM-DD"), ("", "YYYY-MM-DD")],
)
def test_an_end_date_beyond_the_sane_range_is_one_line(runner: FlaskCliRunner, session: Session, until: str, message: str) -> None:
    controller = make_controller(session)
    session.commit()
    _refused(runner, session, ["hold", "add", "--controller", str(controller.id), "--basis", "accounting", "--until", until], message)


def test_the_last_allowed_year_is_accepted(runner: FlaskCliRunner, session: Session) -> None:
    controller = make_controller(session)
    session.commit()
    result = runner.invoke(args=["retention", "hold", "add", "--controller", str(controller.id), "--basis", "accounting", "--until", "2200-12-31"])
    assert result.exit_code == 0 and "until 2200-12-31" in result.output, result.output


@pytest.mark.parametrize(
    ("basis", "note", "message"),
    [
        ("", "", "needs a text naming the obligation"),
        ("   ", "", "needs a text naming the obligation"),
        ("other", "", "needs a text naming the obligation"),
        ("accounting", "x" * 200_000, "longer than 2000 characters"),
        ("tax law §147 AO", "y" * 2000, "longer than 2000 characters"),
    ],
)
def test_hold_texts_are_required_for_other_and_bounded(runner: FlaskCliRunner, session: Session, basis: str, note: str, message: str) -> None:
    controller = make_controller(session)
    session.commit()
    args = ["hold", "add", "--controller", str(controller.id), "--basis", basis, "--note", note, "--until", "2027-01-01"]
    _refused(runner, session, args, message)


def test_a_policys_legal_basis_is_bounded(runner: FlaskCliRunner, session: Session) -> None:
    controller = make_controller(session)
    session.commit()
    args = ["policy", "set", "requester_identity", "--days", "30", "--basis", "z" * 2001, "--controller", str(controller.id)]
    _refused(runner, session, args, "longer than 2000 characters")
    _refused(runner, session, [*args[:6], "  ", *args[7:]], "needs its legal basis")


def test_a_controllers_override_is_withdrawn_versioned_and_audited(runner: FlaskCliRunner, session: Session) -> None:
    controller = make_controller(session)
    session.commit()
    cid = str(controller.id)
    assert runner.invoke(args=["retention", "policy", "set", "requester_identity", "--days", "30", "--basis", "contract", "--controller", cid]).exit_code == 0
    result = runner.invoke(args=["retention", "policy", "withdraw", "requester_identity", "--controller", cid])
    assert result.exit_code == 0 and "withdrawn (v2)" in result.output, result.output
    session.expire_all()
    in_force = policies.effective(session, "requester_identity", controller.id, now=utcnow())
    assert in_force.source == "desk" and in_force.period_days == DEFAULTS["requester_identity"].period_days
    rows = list(session.scalars(select(RetentionPolicy).where(RetentionPolicy.controller_id == controller.id).order_by(RetentionPolicy.version)))
    assert [(r.version, r.withdrawn) for r in rows] == [(1, False), (2, True)]
    events = session.scalars(select(AuditEvent.action).where(AuditEvent.action == "retention.policy_changed", AuditEvent.controller_id == controller.id))
    assert len(list(events)) == 2
    # Twice, or with nothing to withdraw, or for an unknown controller: one line, nothing changed
    _refused(runner, session, ["policy", "withdraw", "requester_identity", "--controller", cid], "has no override of requester_identity")
    _refused(runner, session, ["policy", "withdraw", "requester_identity", "--controller", "999"], "no controller 999")
    assert runner.invoke(args=["retention", "policy", "withdraw", "--help"]).exit_code == 0


def test_a_hold_records_the_operator_who_placed_it(runner: FlaskCliRunner, session: Session) -> None:
    controller = make_controller(session)
    session.commit()
    base = ["retention", "hold", "add", "--controller", str(controller.id), "--basis", "litigation", "--indefinite"]
    assert runner.invoke(args=[*base, "--by", "jdoe"]).exit_code == 0
    assert runner.invoke(args=base).exit_code == 0
    session.expire_all()
    placed = [h.placed_by for h in session.scalars(select(RetentionHold).order_by(RetentionHold.id))]
    assert placed == ["system:operator:jdoe", f"system:operator:{getpass.getuser()}"]
    listing = runner.invoke(args=["retention", "holds"]).output
    assert "placed by system:operator:jdoe" in listing and "cli:retention hold add" not in listing
    _refused(runner, session, [*base[1:], "--by", "two words"], "--by")
