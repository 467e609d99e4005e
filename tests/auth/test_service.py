"""The staff-access service without HTTP: lockout curve, replay under a race, audit details."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.auth import login, mfa, service
from app.auth.models import RecoveryCode, User
from tests.factories import TEST_PASSWORD, TEST_POLICY, TEST_PRINCIPAL, make_user

NOW = dt.datetime(2026, 11, 21, 10, 0, 5, tzinfo=dt.UTC)


def test_lock_delay_starts_at_the_threshold_doubles_and_is_capped() -> None:
    policy = service.AuthPolicy(lock_threshold=5, lock_base_seconds=60, lock_max_seconds=3600)
    assert [policy.lock_seconds(n) for n in (1, 4, 5, 6, 7, 10, 11, 50)] == [0, 0, 60, 120, 240, 1920, 3600, 3600]


def test_a_code_raced_through_two_requests_is_accepted_once(session: Session) -> None:
    user = make_user(session)
    code = mfa.code_at(user.totp_secret or "", NOW)
    # Another request accepted this step a moment ago; this request's copy of the row is stale.
    session.execute(update(User).where(User.id == user.id).values(totp_last_step=mfa.time_step(NOW)).execution_options(synchronize_session=False))
    assert user.totp_last_step is None
    with pytest.raises(login.MfaFailed):
        login.verify_second_factor(session, user, code, now=NOW, policy=TEST_POLICY)


def test_a_recovery_code_raced_through_two_requests_is_accepted_once(session: Session) -> None:
    user = make_user(session)
    codes = login.regenerate_recovery_codes(session, user.id, password=TEST_PASSWORD, now=NOW, policy=TEST_POLICY)
    assert login.verify_second_factor(session, user, codes[0], now=NOW, policy=TEST_POLICY) == "recovery"
    with pytest.raises(login.MfaFailed):
        login.verify_second_factor(session, user, codes[0], now=NOW, policy=TEST_POLICY)
    assert login.remaining_recovery_codes(session, user.id) == 9


def test_regenerating_recovery_codes_invalidates_the_old_ones(session: Session) -> None:
    user = make_user(session)
    old = login.regenerate_recovery_codes(session, user.id, password=TEST_PASSWORD, now=NOW, policy=TEST_POLICY)
    new = login.regenerate_recovery_codes(session, user.id, password=TEST_PASSWORD, now=NOW, policy=TEST_POLICY)
    assert set(old).isdisjoint(new)
    assert len(session.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id)).all()) == len(new)
    assert login._recovery_candidates(session, user.id, old[0])[0] not in session.scalars(select(RecoveryCode.code_hash)).all()
    with pytest.raises(service.InvalidUser):
        login.regenerate_recovery_codes(session, user.id, password="not-my-password-at-all", now=NOW, policy=TEST_POLICY)


def test_every_audit_event_of_a_login_carries_ids_and_counts_only(session: Session) -> None:
    user = make_user(session, "agent", email="canary.person@desk.example")
    for _ in range(5):
        with pytest.raises(login.LoginFailed):
            login.authenticate(session, user.email, "wrong-password-attempt", now=NOW, policy=TEST_POLICY)
    service.unlock_user(session, user.id, by=TEST_PRINCIPAL, now=NOW)
    service.set_role(session, user.id, role="auditor", controller_ids=[], by=TEST_PRINCIPAL, now=NOW)
    events = list(session.scalars(select(AuditEvent).where(AuditEvent.target_id == str(user.id))))
    actions = [e.action for e in events]
    assert actions.count("auth.login_failed") == 5 and "auth.locked" in actions and "auth.unlocked" in actions and "user.role_changed" in actions
    for event in events:
        assert "canary" not in event.details_json and "wrong-password" not in event.details_json


def test_disabled_user_cannot_pass_either_step(session: Session) -> None:
    user = make_user(session, "agent")
    service.disable_user(session, user.id, by=TEST_PRINCIPAL, now=NOW)
    with pytest.raises(login.LoginFailed):
        login.authenticate(session, user.email, TEST_PASSWORD, now=NOW, policy=TEST_POLICY)
    with pytest.raises(login.LoginFailed):
        login.verify_second_factor(session, user, mfa.code_at(user.totp_secret or "", NOW), now=NOW, policy=TEST_POLICY)
