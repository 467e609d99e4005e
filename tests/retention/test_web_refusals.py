"""The retention page refuses bad input with one flashed line and a 303 back, changing nothing; admins withdraw overrides;
lifted holds are listed apart; any 500 renders its page (issue 14 review)."""

from __future__ import annotations

import datetime as dt

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.db import utcnow
from app.retention import holds, policies
from app.retention.models import RetentionHold, RetentionPolicy
from app.retention.periods import DEFAULTS
from tests.conftest import AuthActions
from tests.factories import make_controller
from tests.retention.support import SYSTEM


def _counts(session: Session) -> tuple[int, int, int]:
    session.expire_all()
    return (
        int(session.scalar(select(func.count()).select_from(RetentionHold)) or 0),
        int(session.scalar(select(func.count()).select_from(RetentionPolicy)) or 0),
        int(session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action.like("retention.%"))) or 0),
    )


def _refused(client: FlaskClient, session: Session, url: str, data: dict[str, str], message: str) -> None:
    before = _counts(session)
    response = client.post(url, data=data)
    assert response.status_code == 303 and response.headers["Location"].endswith("/retention/")
    page = client.get("/retention/").get_data(as_text=True)
    assert message in page, message
    assert _counts(session) == before


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "controller", "controller_id": "999"}, "no controller 999"),
        ({"kind": "controller", "controller_id": "12345678901234567890"}, "no controller 12345678901234567890"),
        ({"kind": "controller", "controller_id": "abc"}, "the controller id must be a whole number"),
        ({"kind": "subject", "subject": ""}, "needs the subject&#39;s email address"),
        ({"kind": "subject", "subject": "notanemail"}, "not a valid email address"),
        ({"kind": "subject", "subject": "b" * 3000}, "longer than 254 characters"),
        ({"kind": "controller", "until": "9999-12-31", "basis": "accounting"}, "2200 or earlier"),
        ({"kind": "controller", "basis": "other", "note": ""}, "needs a text naming the obligation"),
        ({"kind": "controller", "note": "n" * 3000}, "longer than 2000 characters"),
        ({"kind": "ticket", "ticket": "T-2026-99999999999999999999"}, "no ticket with that reference"),
    ],
)
def test_a_bad_hold_is_one_flashed_line_and_nothing_changes(
    client: FlaskClient, auth: AuthActions, session: Session, fields: dict[str, str], message: str
) -> None:
    controller = make_controller(session)
    session.commit()
    auth.login("privacy_officer")
    data = {"controller_id": str(controller.id), "basis": "litigation", "note": "case 9", "until": "2027-01-01", **fields}
    _refused(client, session, "/retention/holds", data, message)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"controller_id": "999"}, "no controller 999"),
        ({"controller_id": "99999999999999999999"}, "no controller 99999999999999999999"),
        ({"legal_basis": "l" * 3000}, "longer than 2000 characters"),
    ],
)
def test_a_bad_policy_is_one_flashed_line_and_nothing_changes(
    client: FlaskClient, auth: AuthActions, session: Session, fields: dict[str, str], message: str
) -> None:
    auth.login("admin")
    data = {"category": "requester_identity", "period_days": "30", "action": "anonymise", "legal_basis": "contract", **fields}
    _refused(client, session, "/retention/policies", data, message)


def test_the_admin_withdraws_a_controllers_override_from_the_page(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    controller = make_controller(session, name="Override GmbH")
    session.commit()
    auth.login("admin")
    data = {"category": "requester_identity", "controller_id": str(controller.id), "period_days": "30", "action": "anonymise", "legal_basis": "contract"}
    assert client.post("/retention/policies", data=data).status_code == 303
    page = client.get("/retention/").get_data(as_text=True)
    assert "/retention/policies/withdraw" in page and "Withdraw" in page
    response = client.post("/retention/policies/withdraw", data={"category": "requester_identity", "controller_id": str(controller.id)})
    assert response.status_code == 303
    assert "the override of controller" in client.get("/retention/").get_data(as_text=True)
    in_force = policies.effective(session, "requester_identity", controller.id, now=utcnow())
    assert in_force.source == "desk" and in_force.period_days == DEFAULTS["requester_identity"].period_days
    newest = session.scalars(select(RetentionPolicy).where(RetentionPolicy.controller_id == controller.id).order_by(RetentionPolicy.version.desc())).first()
    assert newest is not None and newest.withdrawn and newest.version == 2
    # Again: nothing left to withdraw; an unknown controller; not an admin
    _refused(client, session, "/retention/policies/withdraw", {"category": "requester_identity", "controller_id": str(controller.id)}, "has no override")
    _refused(client, session, "/retention/policies/withdraw", {"category": "requester_identity", "controller_id": "999"}, "no controller 999")
    auth.logout()
    auth.login("privacy_officer")
    assert "/retention/policies/withdraw" not in client.get("/retention/").get_data(as_text=True)
    assert client.post("/retention/policies/withdraw", data={"category": "requester_identity", "controller_id": str(controller.id)}).status_code == 403


def test_lifted_holds_are_listed_apart_newest_first_with_a_way_to_see_all(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    controller = make_controller(session)
    now = utcnow()
    lifted = []
    for n in range(15):
        hold = holds.place(
            session, kind="controller", controller_id=controller.id, basis="litigation", basis_text=f"matter-{n:02d}", until=None, by=SYSTEM, now=now
        )
        holds.lift(session, hold.id, by=SYSTEM, now=now)
        lifted.append(hold.id)
    holds.place(session, kind="controller", controller_id=controller.id, basis="litigation", basis_text="matter-active", until=None, by=SYSTEM, now=now)
    session.commit()
    auth.login("privacy_officer")
    page = client.get("/retention/").get_data(as_text=True)
    active, ended = page.split('id="holds-active"')[1].split('id="holds-ended"')
    assert "matter-active" in active and "matter-" not in active.replace("matter-active", "")
    assert "Lifted and ended holds (15)" in page
    shown = [n for n in range(15) if f"matter-{n:02d}" in ended]
    assert shown == list(range(5, 15))  # the newest ten
    assert "/retention/?holds=all" in page
    everything = client.get("/retention/?holds=all").get_data(as_text=True)
    assert all(f"matter-{n:02d}" in everything for n in range(15))


def test_a_view_failing_after_a_failed_flush_renders_the_500_page(
    app: Flask, client: FlaskClient, auth: AuthActions, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    controller = make_controller(session)
    session.commit()
    auth.login("privacy_officer")

    def broken_flush(db_session: Session, **_: object) -> RetentionHold:
        db_session.add(RetentionHold(kind="controller", controller_id=controller.id, key_owner=0, basis="nonsense", placed_by="x", placed_at=utcnow()))
        db_session.flush()  # violates the basis check: the session must be rolled back before anything else uses it
        raise AssertionError("unreachable")

    monkeypatch.setattr(holds, "place", broken_flush)
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)
    response = client.post("/retention/holds", data={"kind": "controller", "controller_id": str(controller.id), "basis": "litigation"})
    assert response.status_code == 500
    page = response.get_data(as_text=True)
    assert "Server error" in page and "Nothing you submitted was changed" in page
    assert session.scalar(select(func.count()).select_from(RetentionHold)) == 0


def test_retention_max_days_is_bounded_at_start_and_cutoff_never_overflows() -> None:
    from app.retention.periods import cutoff, due
    from config.settings import ConfigError, DevelopmentConfig

    env = {"MASTER_SECRET": "m" * 40, "SECRET_KEY": "k" * 40, "DESK_INSTANCE_PATH": "/tmp/retention-settings"}
    assert DevelopmentConfig.from_env({**env, "RETENTION_MAX_DAYS": "36500"})["RETENTION_MAX_DAYS"] == 36500
    for too_many in ("36501", "99999999999999999999"):
        with pytest.raises(ConfigError, match=r"^RETENTION_MAX_DAYS must be at most 36500"):
            DevelopmentConfig.from_env({**env, "RETENTION_MAX_DAYS": too_many})
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    assert cutoff(now, 10**6) == dt.datetime.min.replace(tzinfo=dt.UTC)
    assert cutoff(now, 10**12) == dt.datetime.min.replace(tzinfo=dt.UTC)
    assert not due(dt.datetime(2000, 1, 1, tzinfo=dt.UTC), now, 10**12)
