"""Issue 12 item 9: recovery codes under a keyed hash (and 0018 converts old ones), regenerating them ends other sessions."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app import migrations
from app.auth import login, mfa
from app.auth.models import RecoveryCode, StaffSession
from app.extensions import db
from tests.conftest import AuthActions, app_on_own_database
from tests.factories import TEST_PASSWORD, make_user


def test_a_copy_of_the_table_cannot_be_tested_offline(session: Session) -> None:
    user = make_user(session)
    codes = login.regenerate_recovery_codes(session, user.id, password=TEST_PASSWORD, now=dt.datetime.now(dt.UTC), policy=login.AuthPolicy(bcrypt_cost=4))
    stored = set(session.scalars(select(RecoveryCode.code_hash).where(RecoveryCode.user_id == user.id)))
    # Neither the plain SHA-256 (the old form) nor an HMAC under another user's id matches
    assert all(mfa.hash_recovery_code(c) not in stored for c in codes)
    other = make_user(session)
    assert not set(login._recovery_candidates(session, other.id, codes[0])) & stored
    assert set(login._recovery_candidates(session, user.id, codes[0])) & stored


def test_migration_0018_converts_plain_sha256_codes_and_they_still_log_in(app: Flask, tmp_path: Path) -> None:
    with app_on_own_database(app, tmp_path, "recovery") as own:
        code = "abcd-efgh-jkmn-pqrs"
        with own.app_context():
            with db.session_scope() as session:
                user = make_user(session)
                user_id = user.id
            url = own.config["DATABASE_URL"]
            db.state(own).engine.dispose()
            migrations.downgrade(url, "0017")
            with db.state(own).engine.begin() as conn:
                # Given a code stored the old way and the schema at 0017
                legacy = hashlib.sha256(mfa.normalise_code(code).lower().encode()).hexdigest()
                conn.execute(text("DELETE FROM recovery_codes WHERE user_id = :u"), {"u": user_id})
                conn.execute(
                    text("INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES (:u, :h, CURRENT_TIMESTAMP)"), {"u": user_id, "h": legacy}
                )
            migrations.upgrade(url)
            with db.session_scope() as session:
                [stored] = session.scalars(select(RecoveryCode.code_hash).where(RecoveryCode.user_id == user_id)).all()
                assert stored != legacy and stored.startswith("k1$")
                assert stored in login._recovery_candidates(session, user_id, code)


def test_regenerating_recovery_codes_ends_the_other_sessions(app: Flask, client: FlaskClient, auth: AuthActions, session: Session) -> None:
    user = auth.login("agent")
    other = app.test_client()
    AuthActions(other, session).login(user)
    assert other.get("/").status_code == 200
    response = client.post("/account/recovery-codes", data={"password": TEST_PASSWORD})
    assert response.status_code == 200
    assert client.get("/").status_code == 200  # this session stays
    assert other.get("/").status_code == 302  # the other one ended
    live = session.scalars(select(StaffSession).where(StaffSession.user_id == user.id, StaffSession.revoked_at.is_(None), StaffSession.stage == "full")).all()
    assert len(live) == 1


def test_the_sessions_page_lists_own_sessions_and_ends_any(app: Flask, client: FlaskClient, auth: AuthActions, session: Session) -> None:
    user = auth.login("agent")
    other = app.test_client()
    AuthActions(other, session).login(user)
    stranger = make_user(session, "agent")
    theirs = StaffSession(token_hash="x" * 64, user_id=stranger.id, stage="full", created_at=dt.datetime.now(dt.UTC), last_seen_at=dt.datetime.now(dt.UTC))
    session.add(theirs)
    session.flush()
    page = client.get("/account/sessions")
    assert page.status_code == 200
    mine = session.scalars(select(StaffSession).where(StaffSession.user_id == user.id, StaffSession.stage == "full", StaffSession.revoked_at.is_(None))).all()
    assert len(mine) == 2 and page.get_data(as_text=True).count("/end") == 2 and "this session" in page.get_data(as_text=True)
    # Another user's session cannot be ended from here (404, and it lives on)
    assert client.post(f"/account/sessions/{theirs.id}/end").status_code == 404
    session.refresh(theirs)
    assert theirs.revoked_at is None
    # Ending the other session signs that browser out; this one stays
    other_row = max(mine, key=lambda r: r.id)  # `other` signed in second
    assert client.post(f"/account/sessions/{other_row.id}/end").status_code == 303
    assert other.get("/").status_code == 302 and client.get("/").status_code == 200


def test_a_stranger_cannot_keep_a_staff_member_out(client: FlaskClient, session: Session) -> None:
    import time_machine

    from app.auth.models import User

    t0 = dt.datetime(2026, 11, 21, 9, 0, 10, tzinfo=dt.UTC)
    user = make_user(session)
    home, stranger = client, client.application.test_client()
    home.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    stranger.environ_base["REMOTE_ADDR"] = "203.0.113.9"

    def login_from(c: FlaskClient, at: dt.datetime, password: str = TEST_PASSWORD) -> int:
        step = c.post("/login", data={"email": user.email, "password": password}).status_code
        if step != 302:
            return step
        user.totp_last_step = None
        session.flush()
        return c.post("/login/mfa", data={"code": mfa.code_at(user.totp_secret or "", at)}).status_code

    with time_machine.travel(t0, tick=False) as clock:
        # Given the staff member signed in from home once
        assert login_from(home, t0) == 302
        home.post("/logout")
        # And a stranger locks the account (5 failures: a minute) and renews it as it ends (then two minutes)
        for _ in range(5):
            assert login_from(stranger, t0, "wrong-password-guess") == 401
        clock.shift(61)
        assert login_from(stranger, t0 + dt.timedelta(seconds=61), "wrong-password-guess") == 401
        session.expire_all()
        locked = session.get(User, user.id)
        assert locked is not None and locked.locked_until == t0 + dt.timedelta(seconds=61 + 120)
        # At once: the lock holds even from home with the right password (the throttle is kept)
        assert login_from(home, t0 + dt.timedelta(seconds=61)) == 401
        # When a minute of the renewed lock has passed
        clock.shift(61)
        now = t0 + dt.timedelta(seconds=122)
        # Then the stranger with the right password is still locked out (not a known address)
        assert login_from(stranger, now) == 401
        # But the staff member at home, with password and TOTP, gets in, and the lock is lifted
        assert login_from(home, now) == 302
        assert home.get("/").status_code == 200
        session.expire_all()
        assert session.get(User, user.id).failed_attempts == 0  # type: ignore[union-attr]
