"""The two login steps (password, then TOTP or a recovery code), MFA enrolment and lockouts.

Services flush; the caller commits. A refused login raises after recording the
failure (counter, lockout, audit event): the caller must commit, not roll back,
or the throttling would forget the attempt.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.auth import mfa, passwords
from app.auth.models import RecoveryCode, StaffSession, User
from app.auth.service import AuthError, AuthPolicy, InvalidUser, UserNotFound, audit_user, find_user, get_user
from app.auth.sessions import revoke_user_sessions
from app.crypto.keyring import keyring_for
from app.exceptions import Conflict, Refused
from app.principal import Principal

# Who acts before anyone is logged in (failed logins of unknown addresses).
LOGIN_PRINCIPAL = Principal.system("web-login")
MFA_ISSUER = "DSR Desk"


class LoginFailed(AuthError, Refused):
    """Wrong email, wrong password, disabled or locked: one answer for all, so none can be told apart."""


class MfaFailed(AuthError, Refused):
    """The TOTP or recovery code was wrong, reused or too old."""


class AccountLocked(AuthError, Conflict):
    """Too many failed attempts; `until` is when the lock ends."""

    def __init__(self, until: dt.datetime) -> None:
        super().__init__("account locked")
        self.until = until


class MfaState(AuthError, Conflict):
    """The account is not in the MFA state this step needs (already enrolled, or not yet)."""


# --- login: failures and lockout --------------------------------------------------------


def _register_failure(session: Session, user: User, *, stage: str, now: dt.datetime, policy: AuthPolicy) -> None:
    # An atomic increment: parallel attempts from many addresses all count.
    failures = session.execute(
        update(User).where(User.id == user.id).values(failed_attempts=User.failed_attempts + 1).returning(User.failed_attempts)
    ).scalar_one()
    session.refresh(user, ["failed_attempts"])
    audit_user(session, by=LOGIN_PRINCIPAL, action="auth.login_failed", user_id=user.id, now=now, details={"stage": stage, "failed_attempts": failures})
    seconds = policy.lock_seconds(failures)
    if seconds:
        user.locked_until = now + dt.timedelta(seconds=seconds)
        session.flush()
        audit_user(session, by=LOGIN_PRINCIPAL, action="auth.locked", user_id=user.id, now=now, details={"failed_attempts": failures, "seconds": seconds})


# A lock a stranger can renew must not keep the staff member out (issue 12 item 9). From an address
# the user has completed a login from before, the correct password and TOTP pass a lock once it is
# this old: a guesser elsewhere gains nothing (their attempts stay locked out and counted), and the
# user waits a minute, not the hour a renewed lock can reach. A minute: long enough that a guesser
# who shares that address (an office NAT) still gets only one try a minute and lock.
KNOWN_ADDRESS_DELAY = dt.timedelta(seconds=60)
KNOWN_ADDRESS_LOOKBACK = dt.timedelta(days=90)


def _known_address(session: Session, user_id: int, address: str, now: dt.datetime) -> bool:
    rows = session.scalars(
        select(StaffSession)
        .where(StaffSession.user_id == user_id, StaffSession.stage == "full", StaffSession.created_at >= now - KNOWN_ADDRESS_LOOKBACK)
        .order_by(StaffSession.id.desc())
        .limit(50)
    )
    return any(row.ip_address == address for row in rows)


def may_pass_lock(session: Session, user: User, *, now: dt.datetime, policy: AuthPolicy, client_address: str | None) -> bool:
    """True when a locked user's attempt comes from a known address and the lock is at least KNOWN_ADDRESS_DELAY old."""
    if client_address is None or user.locked_until is None or not user.is_locked(now):
        return False
    started = user.locked_until - dt.timedelta(seconds=policy.lock_seconds(user.failed_attempts) or 0)
    return now - started >= KNOWN_ADDRESS_DELAY and _known_address(session, user.id, client_address, now)


def authenticate(session: Session, email: str, password: str, *, now: dt.datetime, policy: AuthPolicy, client_address: str | None = None) -> User:
    """Step one: the password. Returns the user, or raises LoginFailed (after counting the failure).

    A locked account is refused like a wrong password, except from a known address once the lock
    is a minute old (`may_pass_lock`): then the password is checked (and a wrong one counted).
    """
    try:
        user: User | None = find_user(session, email)
    except UserNotFound:
        user = None
    locked = user is not None and user.is_locked(now) and not may_pass_lock(session, user, now=now, policy=policy, client_address=client_address)
    if user is None or not user.is_active or locked:
        # The same bcrypt work as a real check, so timing does not reveal which case this is.
        passwords.verify_password(password, None, cost=policy.bcrypt_cost)
        audit_user(
            session,
            by=LOGIN_PRINCIPAL,
            action="auth.login_failed",
            user_id=user.id if user else None,
            now=now,
            details={"stage": "password", "reason": "unknown" if user is None else ("disabled" if not user.is_active else "locked")},
        )
        raise LoginFailed()
    if not passwords.verify_password(password, user.password_hash, cost=policy.bcrypt_cost):
        _register_failure(session, user, stage="password", now=now, policy=policy)
        raise LoginFailed()
    if passwords.needs_rehash(user.password_hash, cost=policy.bcrypt_cost):
        user.password_hash = passwords.hash_password(password, cost=policy.bcrypt_cost)
        session.flush()
        audit_user(session, by=Principal.staff(user.id), action="auth.password_rehashed", user_id=user.id, now=now, details={"cost": policy.bcrypt_cost})
    # The failure counter is reset only after the second factor: a stolen password alone
    # must not buy fresh TOTP guesses.
    return user


def _check_lock(session: Session, user: User, now: dt.datetime, policy: AuthPolicy, client_address: str | None = None) -> None:
    if not user.is_active:
        raise LoginFailed()
    if user.locked_until is not None and user.is_locked(now):
        if not may_pass_lock(session, user, now=now, policy=policy, client_address=client_address):
            raise AccountLocked(user.locked_until)


def _succeed(session: Session, user: User, *, now: dt.datetime) -> None:
    user.failed_attempts = 0
    user.locked_until = None
    user.last_login_at = now
    session.flush()


def record_login(session: Session, user: User, staff_session: StaffSession, *, method: str, now: dt.datetime) -> None:
    """Audit a completed login (the session id links to the encrypted client address)."""
    audit_user(session, by=Principal.staff(user.id), action="auth.login", user_id=user.id, now=now, details={"session_id": staff_session.id, "method": method})


# --- login: the second factor -----------------------------------------------------------


def begin_enrolment(session: Session, user: User, *, now: dt.datetime) -> str:
    """The pending TOTP secret to show (made once, kept until confirmed); MfaState if already enrolled."""
    if user.mfa_enrolled_at is not None:
        raise MfaState("already enrolled")
    if not user.totp_secret:
        user.totp_secret = mfa.new_secret()
        user.updated_at = now
        session.flush()
    return user.totp_secret


def _new_codes(session: Session, user: User, *, now: dt.datetime) -> list[str]:
    codes = mfa.new_recovery_codes()
    keyring = keyring_for(session)
    key, version = keyring.derive(mfa.RECOVERY_KEY_PURPOSE), keyring.current_version
    user.recovery_codes = [RecoveryCode(code_hash=mfa.keyed_recovery_hash(key, version, user.id, c), created_at=now) for c in codes]
    session.flush()
    return codes


def _recovery_candidates(session: Session, user_id: int, code: str) -> list[str]:
    """The stored forms `code` would have under each master key version the keyring still holds."""
    keyring = keyring_for(session)
    return [mfa.keyed_recovery_hash(keyring.derive(mfa.RECOVERY_KEY_PURPOSE, v), v, user_id, code) for v in keyring.versions]


def confirm_enrolment(session: Session, user: User, code: str, *, now: dt.datetime, policy: AuthPolicy) -> list[str]:
    """Finish enrolment with a valid code; returns the ten recovery codes (shown once)."""
    _check_lock(session, user, now, policy)
    if user.mfa_enrolled_at is not None or not user.totp_secret:
        raise MfaState("no enrolment pending")
    step = mfa.verify_totp(user.totp_secret, code, last_step=user.totp_last_step, now=now)
    if step is None or not _claim_step(session, user, step):
        _register_failure(session, user, stage="mfa_enrolment", now=now, policy=policy)
        raise MfaFailed()
    user.mfa_enrolled_at = now
    user.updated_at = now
    codes = _new_codes(session, user, now=now)
    _succeed(session, user, now=now)
    audit_user(session, by=Principal.staff(user.id), action="auth.mfa_enrolled", user_id=user.id, now=now, details={"recovery_codes": len(codes)})
    return codes


def verify_second_factor(session: Session, user: User, code: str, *, now: dt.datetime, policy: AuthPolicy, client_address: str | None = None) -> str:
    """Step two: a TOTP code (each time step once) or an unused recovery code. Returns "totp" or "recovery"."""
    _check_lock(session, user, now, policy, client_address)
    if user.mfa_enrolled_at is None or not user.totp_secret:
        raise MfaState("not enrolled")
    if mfa.looks_like_totp(code):
        step = mfa.verify_totp(user.totp_secret, code, last_step=user.totp_last_step, now=now)
        if step is not None and _claim_step(session, user, step):
            _succeed(session, user, now=now)
            return "totp"
    else:
        candidates = _recovery_candidates(session, user.id, code)
        used = session.execute(
            update(RecoveryCode)
            .where(RecoveryCode.user_id == user.id, RecoveryCode.code_hash.in_(candidates), RecoveryCode.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session="fetch")
        )
        # The conditional UPDATE is the check: of two simultaneous uses, one finds the code already spent.
        if int(getattr(used, "rowcount", 0) or 0) == 1:
            _succeed(session, user, now=now)
            audit_user(
                session,
                by=Principal.staff(user.id),
                action="auth.recovery_code_used",
                user_id=user.id,
                now=now,
                details={"remaining": remaining_recovery_codes(session, user.id)},
            )
            return "recovery"
    _register_failure(session, user, stage="mfa", now=now, policy=policy)
    raise MfaFailed()


def _claim_step(session: Session, user: User, step: int) -> bool:
    """Store `step` as the last accepted one if it is later (atomic: a code raced through two requests counts once)."""
    claimed = session.execute(
        update(User)
        .where(User.id == user.id, (User.totp_last_step.is_(None)) | (User.totp_last_step < step))
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    )
    session.refresh(user, ["totp_last_step"])
    return int(getattr(claimed, "rowcount", 0) or 0) == 1


def remaining_recovery_codes(session: Session, user_id: int) -> int:
    """Unused recovery codes of a user."""
    query = select(func.count()).select_from(RecoveryCode).where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
    return session.scalar(query) or 0


def regenerate_recovery_codes(
    session: Session, user_id: int, *, password: str, now: dt.datetime, policy: AuthPolicy, keep_session_id: int | None = None
) -> list[str]:
    """Ten new recovery codes after re-entering the password; the old ones stop working and every other session ends.

    New codes suggest the old ones (or the account) may be compromised: sessions but `keep_session_id`
    (the caller's own) are ended, as after a password change (issue 12 item 9).
    """
    user = get_user(session, user_id)
    if user.mfa_enrolled_at is None:
        raise MfaState("not enrolled")
    if not passwords.verify_password(password, user.password_hash, cost=policy.bcrypt_cost):
        raise InvalidUser({"password": "The password is wrong."})
    codes = _new_codes(session, user, now=now)
    ended = revoke_user_sessions(session, user.id, now=now, keep_id=keep_session_id)
    audit_user(
        session,
        by=Principal.staff(user.id),
        action="auth.recovery_codes_regenerated",
        user_id=user.id,
        now=now,
        details={"recovery_codes": len(codes), "sessions_ended": ended},
    )
    return codes


def record_logout(session: Session, user_id: int, staff_session_id: int, *, now: dt.datetime) -> None:
    """Audit a logout."""
    audit_user(session, by=Principal.staff(user_id), action="auth.logout", user_id=user_id, now=now, details={"session_id": staff_session_id})
