"""Server-side sessions: revocation, timeouts, fresh ids per login step, cookies, CSRF and security headers."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth import mfa
from app.auth.models import StaffSession, User
from tests.conftest import AuthActions
from tests.factories import TEST_PASSWORD, make_user

T0 = dt.datetime(2026, 11, 21, 9, 0, 10, tzinfo=dt.UTC)


def session_cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def logged_in(client: FlaskClient) -> bool:
    return client.get("/").status_code == 200


def test_session_cookie_after_logout_is_refused(client: FlaskClient, auth: AuthActions) -> None:
    auth.login("agent")
    old = session_cookie(client)
    assert logged_in(client)
    auth.logout()
    assert not logged_in(client)
    # Put the old cookie back, as a thief who copied it would.
    client.set_cookie("session", old)
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_disabled_users_open_session_is_refused_on_the_next_request(app: Flask, client: FlaskClient, session: Session, auth: AuthActions) -> None:
    victim = auth.login("agent")
    assert logged_in(client)
    admin_client = app.test_client()
    AuthActions(admin_client, session).login("admin")
    assert admin_client.post(f"/admin/users/{victim.id}/disable").status_code == 302
    assert not logged_in(client)
    session.expire_all()
    assert session.get(User, victim.id).disabled_at is not None


@pytest.mark.parametrize("change", ["reset-mfa", "role"])
def test_mfa_reset_and_role_change_end_sessions(app: Flask, client: FlaskClient, session: Session, auth: AuthActions, change: str) -> None:
    victim = auth.login("agent")
    admin_client = app.test_client()
    AuthActions(admin_client, session).login("admin")
    if change == "reset-mfa":
        admin_client.post(f"/admin/users/{victim.id}/reset-mfa")
    else:
        admin_client.post(f"/admin/users/{victim.id}", data={"role": "privacy_officer"})
    assert not logged_in(client)
    assert logged_in(admin_client)


def test_password_change_ends_other_sessions_but_keeps_this_one(app: Flask, client: FlaskClient, session: Session, auth: AuthActions) -> None:
    user = auth.login("agent")
    other = app.test_client()
    AuthActions(other, session).login(user)
    response = client.post(
        "/account/password", data={"current_password": TEST_PASSWORD, "new_password": "quiet-meadow-copper-19", "confirm": "quiet-meadow-copper-19"}
    )
    assert response.status_code == 302
    assert logged_in(client)
    assert not logged_in(other)


def test_a_long_new_password_of_any_script_is_accepted(client: FlaskClient, auth: AuthActions) -> None:
    # Issue 12 item 8: 64+ characters of any script (was refused over 72 bytes).
    auth.login("agent")
    long_pw = "é" * 36 + "x" * 30  # 66 characters, 102 bytes
    response = client.post("/account/password", data={"current_password": TEST_PASSWORD, "new_password": long_pw, "confirm": long_pw})
    assert response.status_code in (302, 303), response.get_data(as_text=True)
    assert logged_in(client)


def test_idle_timeout_and_absolute_lifetime(app: Flask, client: FlaskClient, auth: AuthActions) -> None:
    with time_machine.travel(T0, tick=False) as clock:
        auth.login("agent")
        clock.shift(29 * 60)
        assert logged_in(client)
        clock.shift(31 * 60)  # 31 minutes without a request
        assert not logged_in(client)
    with time_machine.travel(T0 + dt.timedelta(days=1), tick=False) as clock:
        auth.login("agent")
        for _ in range(36):  # a request every 20 minutes for 12 hours: never idle
            clock.shift(20 * 60)
            assert logged_in(client)
        clock.shift(20 * 60)  # 12 h 20 min after login
        assert not logged_in(client)


def test_each_login_step_gets_a_new_session_id(client: FlaskClient, session: Session) -> None:
    user = make_user(session)
    client.get("/login")
    before = client.get_cookie("session")
    client.post("/login", data={"email": user.email, "password": TEST_PASSWORD})
    after_password = session_cookie(client)
    assert before is None or before.value != after_password
    client.post("/login/mfa", data={"code": mfa.code_at(user.totp_secret or "", dt.datetime.now(dt.UTC))})
    after_mfa = session_cookie(client)
    assert after_mfa != after_password
    rows = list(session.scalars(select(StaffSession).where(StaffSession.user_id == user.id).order_by(StaffSession.id)))
    assert [r.stage for r in rows] == ["password", "full"]
    assert rows[0].revoked_at is not None and rows[1].revoked_at is None
    assert rows[0].token_hash != rows[1].token_hash


def test_cookie_flags(app: Flask, client: FlaskClient, auth: AuthActions) -> None:
    client.get("/login")
    user = make_user(auth.session)
    response = client.post("/login", data={"email": user.email, "password": TEST_PASSWORD})
    set_cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
    from config.settings import ProductionConfig

    assert ProductionConfig.SESSION_COOKIE_SECURE is True


def test_logout_is_post_only(client: FlaskClient, auth: AuthActions) -> None:
    auth.login("agent")
    assert client.get("/logout").status_code == 405
    assert logged_in(client)


def test_security_headers(app: Flask, client: FlaskClient, auth: AuthActions, monkeypatch: pytest.MonkeyPatch) -> None:
    page = client.get("/login")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in page.headers
    monkeypatch.setitem(app.config, "DESK_ENV", "production")
    assert "max-age=" in client.get("/login").headers["Strict-Transport-Security"]
    html = page.get_data(as_text=True)
    assert "<script" not in html and " style=" not in html


class TestCsrf:
    """With CSRF on (as in production), a form without a valid token is a 400 and changes nothing."""

    @pytest.fixture(autouse=True)
    def csrf_on(self, app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)

    @staticmethod
    def token(client: FlaskClient, path: str) -> str:
        match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', client.get(path).get_data(as_text=True))
        assert match, "no CSRF token in the form"
        return match.group(1)

    def test_login_without_token_is_400(self, client: FlaskClient, session: Session) -> None:
        user = make_user(session)
        response = client.post("/login", data={"email": user.email, "password": TEST_PASSWORD})
        assert response.status_code == 400
        assert "form expired" in response.get_data(as_text=True)

    def test_login_with_a_token_works_and_a_stale_one_is_400(self, client: FlaskClient, session: Session) -> None:
        user = make_user(session)
        with time_machine.travel(T0, tick=False) as clock:
            token = self.token(client, "/login")
            clock.shift(2 * 3600)  # past WTF_CSRF_TIME_LIMIT
            stale = client.post("/login", data={"email": user.email, "password": TEST_PASSWORD, "csrf_token": token})
            assert stale.status_code == 400
            token = self.token(client, "/login")
            ok = client.post("/login", data={"email": user.email, "password": TEST_PASSWORD, "csrf_token": token})
            assert ok.status_code == 302

    def test_admin_action_without_token_changes_nothing(self, app: Flask, client: FlaskClient, session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
        target = make_user(session, "agent")
        monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", False)
        AuthActions(client, session).login("admin")
        monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
        assert client.post(f"/admin/users/{target.id}/disable").status_code == 400
        assert client.post("/logout").status_code == 400
        session.expire_all()
        assert session.get(User, target.id).disabled_at is None
        token = self.token(client, f"/admin/users/{target.id}")
        assert client.post(f"/admin/users/{target.id}/disable", data={"csrf_token": token}).status_code == 302
        session.expire_all()
        assert session.get(User, target.id).disabled_at is not None
