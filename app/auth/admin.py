"""The admin's staff pages: list, create, change role, disable/enable, reset MFA, lift a lockout."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from app import staff_notices
from app.auth import onboarding, rbac, service
from app.auth.forms import ActionForm, RoleForm, UserForm
from app.controllers import service as controllers
from app.db import utcnow
from app.errors import back_to, refusal_counts
from app.extensions import db
from app.web import current_principal

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _controller_choices() -> list[tuple[int, str]]:
    return [(c.id, f"{c.id} · {c.name}") for c in controllers.controller_names(db.session)]


@bp.get("/users")
@rbac.require(rbac.USERS_MANAGE)
def users() -> ResponseReturnValue:
    rows = service.list_users(db.session)
    now = utcnow()
    refusals = refusal_counts(db.session, since=now - dt.timedelta(hours=24))
    return render_template("admin/users.html", users=rows, now=now, action=ActionForm(), refusals=refusals)


@bp.route("/users/new", methods=["GET", "POST"])
@rbac.require(rbac.USERS_MANAGE)
def create_user() -> ResponseReturnValue:
    form = UserForm()
    form.controllers.choices = _controller_choices()
    if form.validate_on_submit():
        password = service.random_password()
        try:
            user = service.create_user(
                db.session,
                form.email.data or "",
                role=form.role.data or "",
                password=password,
                controller_ids=form.controllers.data or [],
                by=current_principal(),
                now=utcnow(),
                policy=service.AuthPolicy.from_config(current_app.config),
            )
        except service.InvalidUser as exc:
            db.session.rollback()
            for name, message in exc.errors.items():
                getattr(form, name, form.email).errors.append(message)
        else:
            code = onboarding.issue_enrolment_code(db.session, user.id, by=current_principal(), now=utcnow())
            db.session.commit()
            # Shown once, to the admin, to hand over in person; never stored in clear or logged.
            return render_template("admin/created.html", user=user, password=password, code=code)
    return render_template("admin/user_form.html", form=form, user=None), 200 if request.method in ("GET", "HEAD") else 422


@bp.route("/users/<int:user_id>", methods=["GET", "POST"])
@rbac.require(rbac.USERS_MANAGE)
def edit_user(user_id: int) -> ResponseReturnValue:
    user = service.get_user(db.session, user_id)
    form = RoleForm()
    form.controllers.choices = _controller_choices()
    if request.method in ("GET", "HEAD"):
        form.role.data = user.role
        form.controllers.data = user.controller_ids
    elif form.validate_on_submit():
        try:
            service.set_role(db.session, user.id, role=form.role.data or "", controller_ids=form.controllers.data or [], by=current_principal(), now=utcnow())
        except service.InvalidUser as exc:
            db.session.rollback()
            for name, message in exc.errors.items():
                getattr(form, name, form.role).errors.append(message)
        else:
            db.session.commit()
            flash(f"{user.email} saved; their open sessions were ended.", "success")
            return redirect(url_for("admin.users"))
    return render_template("admin/user_form.html", form=form, user=user, action=ActionForm(), now=utcnow()), 200 if request.method in ("GET", "HEAD") else 422


def _action_form() -> None:
    """The buttons of the user page post a CSRF-checked empty form; anything else is a bad request."""
    if not ActionForm().validate_on_submit():
        abort(400)


def _user_page(user_id: int, done: str) -> ResponseReturnValue:
    flash(f"User {user_id}: {done}.", "success")
    return redirect(url_for("admin.edit_user", user_id=user_id))


@bp.post("/users/<int:user_id>/disable")
@rbac.require(rbac.USERS_MANAGE)
@back_to("admin.edit_user")
def disable_user(user_id: int) -> ResponseReturnValue:
    _action_form()
    service.disable_user(db.session, user_id, by=current_principal(), now=utcnow())
    db.session.commit()
    return _user_page(user_id, "disabled, open sessions ended")


@bp.post("/users/<int:user_id>/enable")
@rbac.require(rbac.USERS_MANAGE)
@back_to("admin.edit_user")
def enable_user(user_id: int) -> ResponseReturnValue:
    _action_form()
    service.enable_user(db.session, user_id, by=current_principal(), now=utcnow())
    db.session.commit()
    return _user_page(user_id, "enabled")


@bp.post("/users/<int:user_id>/reset-mfa")
@rbac.require(rbac.USERS_MANAGE)
@back_to("admin.edit_user")
def reset_mfa(user_id: int) -> ResponseReturnValue:
    _action_form()
    now, by = utcnow(), current_principal()
    user = service.reset_mfa(db.session, user_id, by=by, now=now)
    code = onboarding.issue_enrolment_code(db.session, user.id, by=by, now=now)
    staff_notices.notify(db.session, user, "mfa_reset", config=current_app.config, by=by, now=now)
    db.session.commit()
    return _handover(user, "MFA reset; sessions ended. They set up two-factor authentication again with this enrolment code.", code=code)


@bp.post("/users/<int:user_id>/reset-password")
@rbac.require(rbac.USERS_MANAGE)
@back_to("admin.edit_user")
def reset_password(user_id: int) -> ResponseReturnValue:
    """A new one-time password (changed at the next login); the user's sessions end and they are told by email."""
    _action_form()
    now, by = utcnow(), current_principal()
    password = onboarding.reset_password(db.session, user_id, by=by, now=now, policy=service.AuthPolicy.from_config(current_app.config))
    user = service.get_user(db.session, user_id)
    staff_notices.notify(db.session, user, "password_reset", config=current_app.config, by=by, now=now)
    db.session.commit()
    return _handover(user, "New one-time password; sessions ended. They choose their own at the next login.", password=password)


@bp.post("/users/<int:user_id>/enrolment-code")
@rbac.require(rbac.USERS_MANAGE)
@back_to("admin.edit_user")
def enrolment_code(user_id: int) -> ResponseReturnValue:
    """A fresh single-use enrolment code (24 h) for a user who has not set up two-factor authentication."""
    _action_form()
    now, by = utcnow(), current_principal()
    code = onboarding.issue_enrolment_code(db.session, user_id, by=by, now=now)
    user = service.get_user(db.session, user_id)
    staff_notices.notify(db.session, user, "enrolment_code", config=current_app.config, by=by, now=now)
    db.session.commit()
    return _handover(user, "New enrolment code; any earlier one stops working.", code=code)


def _handover(user: Any, done: str, *, password: str | None = None, code: str | None = None) -> ResponseReturnValue:
    # Shown once, to the admin, to hand over in person or over a separate channel; never stored in clear or logged.
    response = render_template("admin/handover.html", user=user, done=done, password=password, code=code)
    return response, 200, {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@bp.post("/users/<int:user_id>/unlock")
@rbac.require(rbac.USERS_MANAGE)
@back_to("admin.edit_user")
def unlock_user(user_id: int) -> ResponseReturnValue:
    _action_form()
    service.unlock_user(db.session, user_id, by=current_principal(), now=utcnow())
    db.session.commit()
    return _user_page(user_id, "lock lifted")
