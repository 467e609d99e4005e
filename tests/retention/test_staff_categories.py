"""Ended staff sessions and staff login addresses: the desk's data (no controller); boundaries, ledger, dry run, holds do not reach them."""

from __future__ import annotations

import datetime as dt

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from app.auth.models import StaffSession
from app.retention import holds, policies
from tests.factories import make_controller
from tests.retention.records import SECOND, clock_preview, clock_run, ledger, staff_session
from tests.retention.support import SYSTEM

LOGIN = dt.datetime(2025, 5, 5, 7, 0, tzinfo=dt.UTC)
ENDED = LOGIN + dt.timedelta(hours=2)
PERIOD = dt.timedelta(days=90)


def _row(session: Session, row_id: int) -> StaffSession | None:
    session.expire_all()
    return session.get(StaffSession, row_id)


def test_a_logged_out_session_goes_one_second_after_90_days_from_its_end(session: Session) -> None:
    ended = staff_session(session, "out@desk.example", LOGIN, ended=ENDED).id
    clock_run(session, ENDED + PERIOD - SECOND, only_category="ended_sessions")
    assert _row(session, ended) is not None
    at = ENDED + PERIOD + SECOND
    [line] = clock_preview(session, at, "ended_sessions")
    assert (line.controller_id, line.desk_label, line.due, line.held) == (None, "desk", 1, {})
    result = clock_run(session, at, only_category="ended_sessions")
    assert _row(session, ended) is None
    counts = ledger(session, result.run_id)["ended_sessions"]["*"]
    assert (counts["due"], counts["deleted"], counts["held"]) == (1, 1, 0)


def test_a_session_never_logged_out_ends_when_it_expires(app: Flask, session: Session) -> None:
    # Given a session last seen at LOGIN and never revoked: it expired SESSION_IDLE_SECONDS later
    idle = dt.timedelta(seconds=int(app.config["SESSION_IDLE_SECONDS"]))
    expired = staff_session(session, "idle@desk.example", LOGIN).id
    clock_run(session, LOGIN + idle + PERIOD - SECOND, only_category="ended_sessions")
    assert _row(session, expired) is not None
    clock_run(session, LOGIN + idle + PERIOD + SECOND, only_category="ended_sessions")
    assert _row(session, expired) is None


def test_a_live_session_is_never_due(session: Session) -> None:
    now = LOGIN + PERIOD * 3
    live = staff_session(session, "live@desk.example", now - dt.timedelta(minutes=5)).id
    clock_run(session, now, only_category="ended_sessions")
    assert _row(session, live) is not None


def test_the_login_address_is_cleared_one_second_after_90_days_from_the_login(session: Session) -> None:
    row = staff_session(session, "ip@desk.example", LOGIN, ended=ENDED)
    row_id = row.id
    assert row.ip_address == "203.0.113.7"
    clock_run(session, LOGIN + PERIOD - SECOND, only_category="staff_login_ips")
    kept = _row(session, row_id)
    assert kept is not None and kept.ip_address == "203.0.113.7"
    at = LOGIN + PERIOD + SECOND
    [line] = clock_preview(session, at, "staff_login_ips")
    assert (line.due, line.action, line.unit) == (1, "anonymise", "login address(es)")
    result = clock_run(session, at, only_category="staff_login_ips")
    cleared = _row(session, row_id)
    assert cleared is not None and cleared.ip_address is None and cleared.ip_address_ct is None
    assert cleared.created_at == LOGIN  # the session itself stays until its own period
    counts = ledger(session, result.run_id)["staff_login_ips"]["*"]
    assert (counts["due"], counts["anonymised"], counts["held"]) == (1, 1, 0)
    again = clock_run(session, at + SECOND, only_category="staff_login_ips")
    assert ledger(session, again.run_id) == {}


def test_no_controller_hold_reaches_staff_data(session: Session) -> None:
    # Staff data belongs to no controller: a hold on every controller keeps none of it
    ended = staff_session(session, "held@desk.example", LOGIN, ended=ENDED).id
    controller = make_controller(session)
    holds.place(session, kind="controller", controller_id=controller.id, basis="litigation", until=None, by=SYSTEM, now=LOGIN)
    holds.place(session, kind="subject", controller_id=controller.id, subject_email="held@desk.example", basis="litigation", until=None, by=SYSTEM, now=LOGIN)
    at = ENDED + PERIOD + SECOND
    assert [(li.due, li.held) for li in clock_preview(session, at, "ended_sessions")] == [(1, {})]
    clock_run(session, at)
    assert _row(session, ended) is None


def test_only_the_allowed_action_can_be_chosen(session: Session) -> None:
    with pytest.raises(policies.InvalidPolicy, match="staff_login_ips can only anonymise"):
        policies.change(session, "staff_login_ips", controller_id=None, period_days=30, action="delete", legal_basis="x", max_days=3650, by=SYSTEM, now=LOGIN)
