"""The admin's staff pages and the auditor's audit log page."""

from __future__ import annotations

import datetime as dt
import re

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.auth import passwords
from app.auth.models import User
from tests.conftest import AuthActions
from tests.factories import make_controller, make_user


def test_admin_creates_an_agent_with_a_one_time_password(client: FlaskClient, session: Session, auth: AuthActions) -> None:
    c = make_controller(session)
    auth.login("admin")
    assert client.get("/admin/users/new").status_code == 200
    response = client.post("/admin/users/new", data={"email": "New.Agent@Desk.example", "role": "agent", "controllers": [str(c.id)]})
    assert response.status_code == 200
    password = re.search(r'<code class="secret">([^<]+)</code>', response.get_data(as_text=True))
    assert password is not None
    user = session.scalar(select(User).where(User.email == "new.agent@desk.example"))
    assert user is not None and user.role == "agent" and user.controller_ids == [c.id]
    assert user.mfa_enrolled_at is None
    assert passwords.verify_password(password.group(1), user.password_hash, cost=4)
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "user.created", AuditEvent.target_id == str(user.id)))
    assert event is not None and "@" not in event.details_json and password.group(1) not in event.details_json


def test_duplicate_or_bad_email_is_a_form_error(client: FlaskClient, session: Session, auth: AuthActions) -> None:
    admin = auth.login("admin")
    dup = client.post("/admin/users/new", data={"email": admin.email, "role": "agent"})
    assert dup.status_code == 422 and "already exists" in dup.get_data(as_text=True)
    bad = client.post("/admin/users/new", data={"email": "not-an-address", "role": "agent"})
    assert bad.status_code == 422


def test_role_change_is_audited(client: FlaskClient, session: Session, auth: AuthActions) -> None:
    target = make_user(session, "agent")
    auth.login("admin")
    assert client.post(f"/admin/users/{target.id}", data={"role": "auditor"}).status_code == 302
    session.expire_all()
    assert session.get(User, target.id).role == "auditor"
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "user.role_changed", AuditEvent.target_id == str(target.id)))
    assert event is not None and event.details["from"] == "agent" and event.details["to"] == "auditor"


def test_the_last_admin_cannot_be_disabled_or_demoted(client: FlaskClient, session: Session, auth: AuthActions) -> None:
    for other in session.scalars(select(User).where(User.role == "admin")):
        other.disabled_at = dt.datetime.now(dt.UTC)
    session.flush()
    admin = auth.login(make_user(session, "admin"))
    client.post(f"/admin/users/{admin.id}/disable")
    page = client.get(f"/admin/users/{admin.id}")
    assert page.status_code == 200 and "last active admin" in page.get_data(as_text=True)
    session.expire_all()
    assert session.get(User, admin.id).disabled_at is None


def test_lock_is_shown_to_admins_who_can_lift_it(client: FlaskClient, session: Session, auth: AuthActions) -> None:
    locked = make_user(session, "agent", failed_attempts=7, locked_until=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30))
    auth.login("admin")
    listing = client.get("/admin/users").get_data(as_text=True)
    assert "locked until" in listing and f"/admin/users/{locked.id}/unlock" in listing
    assert client.post(f"/admin/users/{locked.id}/unlock").status_code == 302
    session.expire_all()
    user = session.get(User, locked.id)
    assert user.locked_until is None and user.failed_attempts == 0
    assert session.scalar(select(AuditEvent).where(AuditEvent.action == "auth.unlocked", AuditEvent.target_id == str(locked.id))) is not None


def test_enable_after_disable_and_mfa_reset_forces_enrolment(client: FlaskClient, session: Session, auth: AuthActions) -> None:
    target = make_user(session, "agent")
    auth.login("admin")
    client.post(f"/admin/users/{target.id}/disable")
    client.post(f"/admin/users/{target.id}/enable")
    client.post(f"/admin/users/{target.id}/reset-mfa")
    session.expire_all()
    user = session.get(User, target.id)
    assert user.disabled_at is None and user.mfa_enrolled_at is None and user.totp_secret is None and user.recovery_codes == []


def test_auditor_pages_through_and_filters_the_log_without_personal_data(client: FlaskClient, session: Session, auth: AuthActions) -> None:
    make_user(session, "agent", email="canary.person@desk.example")
    auditor = auth.login("auditor")
    page = client.get("/audit/?size=2")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    # Ids and codes, with the acting staff member's name beside the id (issue 16): no other address.
    main = html.split("<main", 1)[1]
    assert "auth.login" in html and "canary" not in html and set(re.findall(r"[\w.+-]+@[\w.-]+", main)) == {auditor.email}
    assert f"staff:{auditor.id}" in main
    older = re.search(r'href="(/audit/\?before=[^"]+)"', html)
    assert older is not None
    assert client.get(older.group(1).replace("&amp;", "&")).status_code == 200
    filtered = client.get(f"/audit/?action=auth.login&target_type=user&target_id={auditor.id}").get_data(as_text=True)
    rows = re.findall(r"<tr>\s*<td[^>]*>\d+</td>", filtered)
    assert rows and "user.created" not in filtered.split("<tbody>", 1)[1]
    today = dt.datetime.now(dt.UTC).date()
    assert "auth.login" in client.get(f"/audit/?since={today}&until={today}").get_data(as_text=True)
    assert "No events match" in client.get(f"/audit/?until={today - dt.timedelta(days=400)}").get_data(as_text=True)
