"""The app-wide gate: who is this request, may they reach this endpoint, and the security headers.

Runs before every view. The Flask session (a signed cookie) carries only the
random token of a server-side session row and the CSRF secret; everything
else is looked up, so revoking the row ends the session at the next request.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, abort, current_app, flash, g, redirect, request, session, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from app.auth import rbac
from app.auth.models import StaffSession
from app.auth.sessions import Lifetimes, resolve_session
from app.db import utcnow
from app.extensions import db
from app.principal import Principal

SESSION_KEY = "sid"
# What a user whose password must be changed may reach: the form to change it, and the way out.
MUST_CHANGE_ALLOWED = frozenset({"auth.account", "auth.change_password", "auth.logout", "static"})

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def lifetimes(config: Any) -> Lifetimes:
    """Idle and absolute session lifetimes from config."""
    return Lifetimes(
        idle=dt.timedelta(seconds=int(config.get("SESSION_IDLE_SECONDS", 1800))),
        absolute=dt.timedelta(seconds=int(config.get("SESSION_ABSOLUTE_SECONDS", 43200))),
    )


def endpoint_permission(app: Flask, endpoint: str) -> str | None:
    """What an endpoint declared (PUBLIC for the built-in allow-list), or None when it declared nothing."""
    if endpoint in rbac.PUBLIC_ENDPOINTS:
        return rbac.PUBLIC
    return rbac.declared_permission(app.view_functions.get(endpoint))


def may_visit(endpoint: str) -> bool:
    """True when the current request's staff member may open `endpoint` (filters the navigation)."""
    permission = endpoint_permission(current_app, endpoint)
    if permission in (rbac.PUBLIC, rbac.LOGIN):
        return True
    staff: rbac.StaffContext | None = g.get("staff")
    return permission is not None and staff is not None and staff.can(permission)


def _safe_next(target: str | None) -> str | None:
    """`target` when it is a relative path of this site that the URL map matches (GET), else None.

    Browsers strip tabs and newlines from a Location and read "/\t/evil" as "//evil",
    so any control character, backslash, scheme or host is refused outright; then the
    path must match a route, which also refuses "/%2F/evil" style tricks.
    """
    if not target or len(target) > 2000 or any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in target) or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return None
    try:
        current_app.url_map.bind("localhost").match(parts.path, method="GET")
    except HTTPException:  # no route, a wrong method, or a redirect (RequestRedirect) to some other URL
        return None
    return target


def login_redirect() -> Response:
    """Back to the login page, remembering where the user was going."""
    target = request.full_path.rstrip("?") if request.method in ("GET", "HEAD") else None
    return redirect(url_for("auth.login", next=_safe_next(target)))


def bind_session(row: StaffSession) -> None:
    """Make `row` the session of this request (sets g.staff and g.principal when MFA passed)."""
    g.auth_session = row
    if row.stage == "full":
        user = row.user
        g.staff = rbac.StaffContext(user_id=user.id, role=user.role, controller_ids=frozenset(user.controller_ids), session_id=row.id)
        g.principal = Principal.staff(user.id)


def start_cookie(token: str) -> None:
    """Replace the Flask session with a fresh one holding only the new token (a new id at each login step)."""
    session.clear()
    session[SESSION_KEY] = token


def end_cookie() -> None:
    """Forget the token (and the CSRF secret) in the browser."""
    session.clear()


def _gate() -> Response | None:
    endpoint = request.endpoint
    if endpoint is None:
        return None  # no route matched: the 404/405 page says so without revealing more
    permission = endpoint_permission(current_app, endpoint)
    if permission == rbac.PUBLIC:
        return None
    token = session.get(SESSION_KEY)
    row = None
    if token:
        row, wrote = resolve_session(db.session, token, now=utcnow(), lifetimes=lifetimes(current_app.config))
        if wrote:
            # An expiry or a touch stands even if the view then fails. Otherwise the transaction runs on
            # into the view: one connection checkout and one BEGIN a request instead of two.
            db.session.commit()
        if row is None:
            end_cookie()
        else:
            bind_session(row)
    if permission == rbac.LOGIN:
        return None
    staff: rbac.StaffContext | None = g.get("staff")
    if staff is None:
        if row is not None and row.stage == "password":
            return redirect(url_for("auth.mfa"))
        return login_redirect()
    if row is not None and row.user.password_must_change and endpoint not in MUST_CHANGE_ALLOWED:
        # A password someone else set (creation, an admin's reset) is replaced before anything else (issue 12 item 7).
        flash("Choose your own password first: the one you were given works only once.", "warning")
        return redirect(url_for("auth.account"))
    if permission is None or not staff.can(permission):
        # An undeclared route is closed to everyone: the matrix test names it.
        abort(403)
    return None


def _headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    if request.endpoint != "static":
        # Pages carry personal data: keep them out of shared and back-button caches.
        headers.setdefault("Cache-Control", "no-store")
    if current_app.config.get("DESK_ENV") == "production":
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    return response


def init_app(app: Flask) -> None:
    """Install the gate and the security headers on every request."""
    app.before_request(_gate)
    app.after_request(_headers)
    app.jinja_env.globals["may_visit"] = may_visit
    app.jinja_env.globals["current_staff"] = lambda: g.get("staff")
