"""Roles, permissions, the `@require` / `@public` decorators and per-controller scope.

Every view declares what it needs with one decorator. The app-wide gate
(`app.auth.gate`) refuses any endpoint that declared nothing, so a route
added without a declaration is closed, and `tests/route_matrix.py` fails.

Least privilege (WECO §9.2(a)): an agent works the tickets of the
controllers assigned to them; a privacy officer handles requests,
instructions, exports and registers; an admin manages staff, controllers and
keys; an auditor reads the audit log and registers, never ticket content.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from flask import abort, g

# Pseudo-permissions: no login at all, or the login steps (password passed, MFA pending).
PUBLIC = "public"
LOGIN = "login"
# Any fully logged-in staff member (home page, own account, logout).
STAFF = "staff"

CONTROLLERS_READ = "controllers.read"
CONTROLLERS_MANAGE = "controllers.manage"
USERS_MANAGE = "users.manage"
AUDIT_READ = "audit.read"
TICKETS_WORK = "tickets.work"
DSR_MANAGE = "dsr.manage"
RETENTION_READ = "retention.read"  # the retention page: policies, holds, preview, ledger (privacy officers, admins)
RETENTION_POLICIES = "retention.policies"  # change a retention policy (admins)
# Only permissions some route declares (tests/route_matrix.py); a later page adds its own with its route.

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "agent": frozenset({STAFF, CONTROLLERS_READ, TICKETS_WORK}),
    "privacy_officer": frozenset({STAFF, CONTROLLERS_READ, TICKETS_WORK, DSR_MANAGE, RETENTION_READ}),
    "admin": frozenset({STAFF, CONTROLLERS_READ, CONTROLLERS_MANAGE, USERS_MANAGE, RETENTION_READ, RETENTION_POLICIES}),
    "auditor": frozenset({STAFF, AUDIT_READ}),
}
# Roles that see only the controllers assigned to them.
SCOPED_ROLES = frozenset({"agent"})

# Endpoints that are not view functions of ours and so cannot carry a declaration.
# `subprocessors.public` is the public sub-processor list (DESIGN.md "Web"); it must stay open.
PUBLIC_ENDPOINTS = frozenset({"static", "subprocessors.public"})

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class StaffContext:
    """Who is logged in on this request: set as `g.staff` by the gate."""

    user_id: int
    role: str
    controller_ids: frozenset[int]
    session_id: int

    @property
    def permissions(self) -> frozenset[str]:
        """What the role allows."""
        return ROLE_PERMISSIONS.get(self.role, frozenset())

    def can(self, permission: str) -> bool:
        """True when the role holds the permission."""
        return permission in self.permissions

    @property
    def controller_scope(self) -> frozenset[int] | None:
        """The controllers this person may see, or None for all."""
        return self.controller_ids if self.role in SCOPED_ROLES else None

    def sees_controller(self, controller_id: int | None) -> bool:
        """True when an object of this controller may be shown."""
        scope = self.controller_scope
        return scope is None or (controller_id is not None and controller_id in scope)


def role_can(role: str, permission: str) -> bool:
    """True when `role` is allowed `permission` (PUBLIC and LOGIN are open to all)."""
    return permission in (PUBLIC, LOGIN) or permission in ROLE_PERMISSIONS.get(role, frozenset())


# The permission each decorated view declared, by view function (the gate and the route matrix read it).
_DECLARED: dict[Callable[..., Any], str] = {}


def declared_permission(view: Callable[..., Any] | None) -> str | None:
    """The permission a view declared, or None."""
    return _DECLARED.get(view) if view is not None else None


def _declare(permission: str) -> Callable[[F], F]:
    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            # The gate already checked; checking again here keeps a view safe
            # even if it is mounted somewhere the gate does not run.
            if permission not in (PUBLIC, LOGIN):
                staff: StaffContext | None = g.get("staff")
                if staff is None:
                    abort(401)
                if not staff.can(permission):
                    abort(403)
            return view(*args, **kwargs)

        _DECLARED[wrapper] = permission
        return cast(F, wrapper)  # functools.wraps keeps the view's signature; mypy cannot see through it

    return decorate


def require(permission: str) -> Callable[[F], F]:
    """Declare and enforce the permission a view needs (a logged-in, MFA-verified role that holds it)."""
    if permission in (PUBLIC, LOGIN):
        raise ValueError("use @public or @login_step")
    return _declare(permission)


def public(view: F) -> F:
    """Declare a view open to everyone, logged in or not (`/healthz`, `/subprocessors`)."""
    return _declare(PUBLIC)(view)


def login_step(view: F) -> F:
    """Declare a view of the login itself (password form, MFA), reachable before MFA passes."""
    return _declare(LOGIN)(view)


def current_staff() -> StaffContext:
    """The logged-in staff member; only call from views behind `@require`."""
    staff: StaffContext | None = g.get("staff")
    if staff is None:
        abort(401)
    return staff


def controller_scope() -> frozenset[int] | None:
    """The controller ids the current staff member may see, or None for all (pass to services as a filter)."""
    return current_staff().controller_scope


def ensure_controller_visible(controller_id: int | None) -> None:
    """404 when the object's controller is outside the current staff member's scope (never reveal it exists)."""
    if not current_staff().sees_controller(controller_id):
        abort(404)
