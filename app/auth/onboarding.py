"""Handing an account over: one-time passwords and single-use MFA enrolment codes (issue 12 items 6, 7).

Whoever holds a password an admin printed must not be able to keep it or to
enrol their own second factor with it alone:

- a password set by someone else (creation, `users reset-password`, the admin's
  "new one-time password") is flagged `password_must_change`; the gate lets the
  user do nothing but replace it (app.auth.gate);
- a TOTP enrolment (a new account, or after an MFA reset) needs the single-use
  enrolment code the admin hands over in person: shown once, kept as SHA-256
  (about 124 random bits), valid 24 hours, spent on use; every issue and use is
  audit-logged.

Services flush; the caller commits and tells the user by email (the edge owns the outbox).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from sqlalchemy.orm import Session

from app.auth import mfa, passwords
from app.auth.models import User
from app.auth.service import AuthError, AuthPolicy, audit_user, get_user, random_password
from app.auth.sessions import revoke_user_sessions
from app.exceptions import Refused
from app.principal import Principal

ENROLMENT_CODE_TTL = dt.timedelta(hours=24)
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


class EnrolmentCodeInvalid(AuthError, Refused):
    """The enrolment code is wrong, used or expired (one answer for all)."""


def _hash(code: str) -> str:
    cleaned = "".join(ch for ch in code.lower() if ch.isalnum())
    return hashlib.sha256(cleaned.encode("ascii", errors="replace")).hexdigest()


def issue_enrolment_code(session: Session, user_id: int, *, by: Principal, now: dt.datetime) -> str:
    """A fresh single-use enrolment code for `user_id` (any earlier one stops working); shown once, never stored in clear."""
    user = get_user(session, user_id)
    # 25 x log2(31) ~ 124 bits: at or above ASVS 6.5.2's 112, so a plain SHA-256 may store it.
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(25))
    code = "-".join(raw[i : i + 5] for i in range(0, 25, 5))
    user.enrolment_code_hash = _hash(code)
    user.enrolment_code_expires_at = now + ENROLMENT_CODE_TTL
    user.updated_at = now
    session.flush()
    audit_user(session, by=by, action="user.enrolment_code_issued", user_id=user.id, now=now, details={"expires_hours": 24})
    return code


def _verified_marker(staff_session_id: int) -> str:
    return f"verified:{staff_session_id}"


def spend_enrolment_code(session: Session, user: User, code: str, *, staff_session_id: int, now: dt.datetime) -> None:
    """Check and spend the user's enrolment code for this half-way login session (flush).

    The code becomes a marker bound to `staff_session_id`, and a fresh TOTP secret is made
    (so nobody who saw an earlier pending secret holds this one). EnrolmentCodeInvalid when
    the code is wrong, used or expired.
    """
    stored, expires = user.enrolment_code_hash, user.enrolment_code_expires_at
    if stored is None or expires is None or expires <= now or not hmac.compare_digest(stored, _hash(code)):
        audit_user(session, by=Principal.staff(user.id), action="auth.enrolment_code_refused", user_id=user.id, now=now)
        raise EnrolmentCodeInvalid("The enrolment code is wrong, already used or expired. Ask an admin for a new one.")
    user.enrolment_code_hash = _verified_marker(staff_session_id)
    user.totp_secret = mfa.new_secret()
    user.updated_at = now
    session.flush()
    audit_user(session, by=Principal.staff(user.id), action="auth.enrolment_code_used", user_id=user.id, now=now)


def enrolment_allowed(user: User, *, staff_session_id: int, now: dt.datetime) -> bool:
    """True when this half-way session spent a valid enrolment code and its 24 hours have not run out."""
    expires = user.enrolment_code_expires_at
    return user.enrolment_code_hash == _verified_marker(staff_session_id) and expires is not None and expires > now


def finish_enrolment(session: Session, user: User) -> None:
    """Forget the spent code once enrolment is confirmed (flush)."""
    user.enrolment_code_hash = None
    user.enrolment_code_expires_at = None
    session.flush()


def reset_password(session: Session, user_id: int, *, by: Principal, now: dt.datetime, policy: AuthPolicy) -> str:
    """Issue a one-time password (returned, shown once): to be changed at the next login; every session of the user ends."""
    user = get_user(session, user_id)
    password = random_password()
    user.password_hash = passwords.hash_password(password, cost=policy.bcrypt_cost)
    user.password_changed_at = now
    user.password_must_change = True
    user.failed_attempts = 0
    user.locked_until = None
    user.updated_at = now
    ended = revoke_user_sessions(session, user.id, now=now)
    audit_user(session, by=by, action="user.password_reset", user_id=user.id, now=now, details={"sessions_ended": ended, "one_time": True})
    return password
