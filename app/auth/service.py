"""Staff accounts: create, find, roles and assigned controllers, disable, MFA reset, unlock, passwords.

Services flush; the caller commits. Every change is audit-logged in the same
transaction. The two login steps and MFA enrolment are app.auth.login.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from app.addresses import InvalidAddress, normalise_email
from app.audit import service as audit
from app.auth import passwords
from app.auth.models import ROLES, User, UserController
from app.auth.sessions import revoke_user_sessions
from app.controllers.models import Controller
from app.exceptions import DeskError, NotFound, Refused
from app.principal import Principal


class AuthError(DeskError):
    """Base of the staff-access service's errors."""


class UserNotFound(AuthError, NotFound):
    """No user with that id."""


class InvalidUser(AuthError, Refused):
    """Input refused; `errors` maps a field name to a message safe to show."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class AuthPolicy:
    """The knobs from config: bcrypt cost and the lockout curve."""

    bcrypt_cost: int = 12
    lock_threshold: int = 5
    lock_base_seconds: int = 60
    lock_max_seconds: int = 3600

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AuthPolicy:
        """The policy of an app's config."""
        return cls(
            bcrypt_cost=int(config.get("BCRYPT_COST", 12)),
            lock_threshold=int(config.get("LOGIN_LOCK_THRESHOLD", 5)),
            lock_base_seconds=int(config.get("LOGIN_LOCK_BASE_SECONDS", 60)),
            lock_max_seconds=int(config.get("LOGIN_LOCK_MAX_SECONDS", 3600)),
        )

    def lock_seconds(self, failures: int) -> int:
        """How long the account locks after `failures` consecutive failures (0 below the threshold); doubles each time."""
        if failures < self.lock_threshold:
            return 0
        return int(min(self.lock_base_seconds * 2 ** min(failures - self.lock_threshold, 30), self.lock_max_seconds))


def audit_user(session: Session, *, by: Principal, action: str, user_id: int | None, now: dt.datetime, details: Mapping[str, Any] | None = None) -> None:
    """Append an audit event about a staff account (ids and counts only) in the caller's transaction."""
    audit.record(session, by=by, action=action, target_type="user", target_id=user_id, details=details, now=now)


# --- accounts ---------------------------------------------------------------------------


def _check_controllers(session: Session, controller_ids: Collection[int]) -> list[int]:
    wanted = sorted(set(controller_ids))
    if not wanted:
        return []
    found = set(session.scalars(select(Controller.id).where(Controller.id.in_(wanted))))
    missing = [c for c in wanted if c not in found]
    if missing:
        raise InvalidUser({"controllers": f"no controller with id {', '.join(map(str, missing))}"})
    return wanted


def create_user(
    session: Session,
    email: str,
    *,
    role: str,
    password: str,
    controller_ids: Collection[int] = (),
    by: Principal,
    now: dt.datetime,
    policy: AuthPolicy,
) -> User:
    """A new staff account; TOTP enrolment happens at its first login."""
    errors: dict[str, str] = {}
    try:
        clean = normalise_email(email)
    except InvalidAddress as exc:
        errors["email"] = str(exc)
        clean = ""
    if clean and session.scalar(select(User.id).where(User.email == clean)) is not None:
        errors["email"] = "a staff account with this address already exists"
    if role not in ROLES:
        errors["role"] = f"role must be one of {', '.join(ROLES)}"
    try:
        passwords.check_policy(password, email=clean or None)
    except passwords.WeakPassword as exc:
        errors["password"] = str(exc)
    try:
        wanted = _check_controllers(session, controller_ids)
    except InvalidUser as exc:
        errors.update(exc.errors)
        wanted = []
    if errors:
        raise InvalidUser(errors)
    user = User(
        email=clean,
        role=role,
        password_hash=passwords.hash_password(password, cost=policy.bcrypt_cost),
        failed_attempts=0,
        password_changed_at=now,
        password_must_change=True,  # set by someone else: the user replaces it at first login (issue 12 item 7)
        created_at=now,
        updated_at=now,
    )
    user.controllers = [UserController(controller_id=c) for c in wanted]
    session.add(user)
    session.flush()
    audit_user(session, by=by, action="user.created", user_id=user.id, now=now, details={"role": role, "controller_ids": wanted})
    return user


def get_user(session: Session, user_id: int) -> User:
    """One user, or UserNotFound."""
    user = session.get(User, user_id)
    if user is None:
        raise UserNotFound(f"no staff account {user_id}")
    return user


def find_user(session: Session, email: str) -> User:
    """The user with this email address, or UserNotFound."""
    try:
        clean = normalise_email(email)
    except InvalidAddress:
        raise UserNotFound("no staff account with that email address") from None
    user = session.scalar(select(User).where(User.email == clean))
    if user is None:
        raise UserNotFound("no staff account with that email address")
    return user


def list_users(session: Session) -> list[User]:
    """Every staff account by email, with assigned controllers."""
    return list(session.scalars(select(User).options(selectinload(User.controllers)).order_by(User.email)))


def count_admins(session: Session) -> int:
    """Active admins; the last one may not be demoted or disabled."""
    return session.scalar(select(func.count()).select_from(User).where(User.role == "admin", User.disabled_at.is_(None))) or 0


def _guard_last_admin(session: Session, user: User, *, new_role: str | None = None, disabling: bool = False) -> None:
    losing = user.role == "admin" and user.is_active and (disabling or (new_role is not None and new_role != "admin"))
    if losing and count_admins(session) <= 1:
        raise InvalidUser({"role": "this is the last active admin; make another admin first"})


def set_role(session: Session, user_id: int, *, role: str, controller_ids: Collection[int], by: Principal, now: dt.datetime) -> User:
    """Change a user's role and assigned controllers; a change ends their sessions."""
    user = get_user(session, user_id)
    if role not in ROLES:
        raise InvalidUser({"role": f"role must be one of {', '.join(ROLES)}"})
    wanted = _check_controllers(session, controller_ids)
    _guard_last_admin(session, user, new_role=role)
    old_role, old_ids = user.role, user.controller_ids
    if old_role == role and old_ids == wanted:
        return user
    user.role = role
    keep = {link.controller_id: link for link in user.controllers}
    user.controllers = [keep.get(c) or UserController(controller_id=c) for c in wanted]
    user.updated_at = now
    ended = revoke_user_sessions(session, user.id, now=now)
    if old_role != role:
        audit_user(session, by=by, action="user.role_changed", user_id=user.id, now=now, details={"from": old_role, "to": role, "sessions_ended": ended})
    if old_ids != wanted:
        audit_user(
            session,
            by=by,
            action="user.controllers_changed",
            user_id=user.id,
            now=now,
            details={"added": [c for c in wanted if c not in old_ids], "removed": [c for c in old_ids if c not in wanted], "sessions_ended": ended},
        )
    return user


def disable_user(session: Session, user_id: int, *, by: Principal, now: dt.datetime) -> User:
    """Disable an account; its open sessions end at once."""
    user = get_user(session, user_id)
    if user.disabled_at is None:
        _guard_last_admin(session, user, disabling=True)
        user.disabled_at = now
        user.updated_at = now
        ended = revoke_user_sessions(session, user.id, now=now)
        audit_user(session, by=by, action="user.disabled", user_id=user.id, now=now, details={"sessions_ended": ended})
    return user


def enable_user(session: Session, user_id: int, *, by: Principal, now: dt.datetime) -> User:
    """Enable a disabled account again."""
    user = get_user(session, user_id)
    if user.disabled_at is not None:
        user.disabled_at = None
        user.updated_at = now
        audit_user(session, by=by, action="user.enabled", user_id=user.id, now=now)
    return user


def reset_mfa(session: Session, user_id: int, *, by: Principal, now: dt.datetime) -> User:
    """Forget a user's TOTP secret and recovery codes; they enrol again at next login, and their sessions end."""
    user = get_user(session, user_id)
    user.totp_secret = None
    user.mfa_enrolled_at = None
    user.totp_last_step = None
    user.recovery_codes = []
    user.updated_at = now
    ended = revoke_user_sessions(session, user.id, now=now)
    audit_user(session, by=by, action="user.mfa_reset", user_id=user.id, now=now, details={"sessions_ended": ended})
    return user


def unlock_user(session: Session, user_id: int, *, by: Principal, now: dt.datetime) -> User:
    """Lift a lockout and reset the failure counter."""
    user = get_user(session, user_id)
    was_locked = user.is_locked(now)
    failures = user.failed_attempts
    user.failed_attempts = 0
    user.locked_until = None
    user.updated_at = now
    audit_user(session, by=by, action="auth.unlocked", user_id=user.id, now=now, details={"was_locked": was_locked, "failed_attempts": failures})
    return user


def set_password(
    session: Session, user_id: int, new_password: str, *, by: Principal, now: dt.datetime, policy: AuthPolicy, keep_session_id: int | None = None
) -> User:
    """Set a new password (policy-checked); every other session of the user ends."""
    user = get_user(session, user_id)
    try:
        passwords.check_policy(new_password, email=user.email)
    except passwords.WeakPassword as exc:
        raise InvalidUser({"new_password": str(exc)}) from None
    user.password_hash = passwords.hash_password(new_password, cost=policy.bcrypt_cost)
    user.password_changed_at = now
    # Only a password the user chose themselves (proved by the current one) is theirs to keep.
    user.password_must_change = by != Principal.staff(user.id)
    user.updated_at = now
    ended = revoke_user_sessions(session, user.id, now=now, keep_id=keep_session_id)
    audit_user(session, by=by, action="user.password_changed", user_id=user.id, now=now, details={"sessions_ended": ended})
    return user


def change_own_password(
    session: Session, user_id: int, current: str, new_password: str, *, now: dt.datetime, policy: AuthPolicy, keep_session_id: int | None
) -> User:
    """A user changes their password, proving the current one first."""
    user = get_user(session, user_id)
    if not passwords.verify_password(current, user.password_hash, cost=policy.bcrypt_cost):
        raise InvalidUser({"current_password": "The current password is wrong."})
    return set_password(session, user_id, new_password, by=Principal.staff(user.id), now=now, policy=policy, keep_session_id=keep_session_id)


def random_password() -> str:
    """A one-time password that passes the policy (for new accounts and the demo)."""
    return secrets.token_urlsafe(18)
