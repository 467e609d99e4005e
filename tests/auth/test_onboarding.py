"""Issue 12 items 6 and 7: a new factor needs the admin's enrolment code; one-time passwords are one-time."""

from __future__ import annotations

import datetime as dt
import re

import time_machine
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.auth import mfa
from app.auth.models import StaffSession, User
from app.mail.models import OutboxEmail
from tests.conftest import AuthActions
from tests.factories import TEST_PASSWORD, make_user

SECRET = re.compile(r'<code class="secret">([^<]+)</code>')


def actions(session: Session, action: str, user_id: int) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action, AuditEvent.target_id == str(user_id))))


def test_after_an_mfa_reset_the_password_alone_cannot_enrol_a_new_factor(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    target = make_user(session, "agent")
    admin_client = client.application.test_client()
    AuthActions(admin_client, session).login("admin")
    # Given an admin resets the agent's MFA: the page shows an enrolment code once, and the agent is told by email
    page = admin_client.post(f"/admin/users/{target.id}/reset-mfa")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    [code] = SECRET.findall(page.get_data(as_text=True))
    [notice] = session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "staff_notice")).all()
    assert notice.to_addr == target.email and code not in (notice.body_text or "") and "two-factor" in (notice.body_text or "")
    assert len(actions(session, "user.enrolment_code_issued", target.id)) == 1
    # When someone holding only the password signs in: no secret, no QR until the code
    assert client.post("/login", data={"email": target.email, "password": TEST_PASSWORD}).status_code == 302
    ask = client.get("/login/mfa/setup")
    assert "<svg" not in ask.get_data(as_text=True)
    assert client.post("/login/mfa/setup", data={"code": "aaaaa-bbbbb-ccccc-ddddd"}).status_code == 401
    session.expire_all()
    assert session.get(User, target.id).totp_secret is None  # type: ignore[union-attr]
    # With the code: the secret appears, and the code is spent (a second half-way login cannot reuse it)
    assert client.post("/login/mfa/setup", data={"code": code}).status_code == 302
    assert "<svg" in client.get("/login/mfa/setup").get_data(as_text=True)
    thief = client.application.test_client()
    assert thief.post("/login", data={"email": target.email, "password": TEST_PASSWORD}).status_code == 302
    assert thief.post("/login/mfa/setup", data={"code": code}).status_code == 401
    assert len(actions(session, "auth.enrolment_code_used", target.id)) == 1


def test_an_enrolment_code_expires_after_24_hours(client: FlaskClient, session: Session) -> None:
    t0 = dt.datetime.now(dt.UTC)
    user = make_user(session, "agent", enrolled=False)
    with time_machine.travel(t0 + dt.timedelta(hours=24, seconds=1), tick=False):
        assert client.post("/login", data={"email": user.email, "password": TEST_PASSWORD}).status_code == 302
        assert client.post("/login/mfa/setup", data={"code": user.test_enrolment_code}).status_code == 401  # type: ignore[attr-defined]


def test_a_one_time_password_must_be_changed_at_first_login(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    target = make_user(session, "agent")
    admin_client = client.application.test_client()
    AuthActions(admin_client, session).login("admin")
    auth.login(target)
    # Given the admin issues a new one-time password: the agent's sessions end, they are told by email
    page = admin_client.post(f"/admin/users/{target.id}/reset-password")
    [password] = SECRET.findall(page.get_data(as_text=True))
    assert client.get("/").status_code == 302
    session.expire_all()
    assert session.scalars(select(StaffSession).where(StaffSession.user_id == target.id, StaffSession.revoked_at.is_(None))).all() == []
    assert [e.details["one_time"] for e in actions(session, "user.password_reset", target.id)] == [True]
    assert session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "staff_notice")).one().to_addr == target.email
    # When the agent signs in with it: every page sends them to choose their own password
    target.totp_last_step = None
    session.flush()
    assert client.post("/login", data={"email": target.email, "password": password}).status_code == 302
    assert client.post("/login/mfa", data={"code": mfa.code_at(target.totp_secret or "", dt.datetime.now(dt.UTC))}).status_code == 302
    for path in ("/", "/tickets/", "/account/sessions"):
        assert client.get(path).headers["Location"] == "/account", path
    assert client.get("/account").status_code == 200
    new = "quiet-meadow-violin-2026"
    changed = client.post("/account/password", data={"current_password": password, "new_password": new, "confirm": new})
    assert changed.status_code == 302
    # Then the desk opens, and the flag is gone
    assert client.get("/").status_code == 200
    session.expire_all()
    assert session.get(User, target.id).password_must_change is False  # type: ignore[union-attr]


def test_a_new_account_must_change_its_password(session: Session) -> None:
    from app.auth import service
    from app.db import utcnow
    from tests.factories import TEST_POLICY

    user = service.create_user(
        session, "fresh@desk.example", role="agent", password=TEST_PASSWORD, by=service.Principal.system("t"), now=utcnow(), policy=TEST_POLICY
    )
    assert user.password_must_change is True
