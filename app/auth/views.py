"""Login (password, then TOTP), enrolment, logout and the staff member's own account page."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from markupsafe import Markup

from app.auth import account as own_sessions
from app.auth import gate, mfa, onboarding, rbac, service
from app.auth import login as login_service
from app.auth.forms import ActionForm, CodeForm, LoginForm, PasswordChangeForm, ReauthForm
from app.auth.models import StaffSession, User
from app.auth.sessions import revoke_session, start_session
from app.db import utcnow
from app.extensions import db

bp = Blueprint("auth", __name__)

LOGIN_FAILED = "The email address or password is wrong, or the account is locked for a while. Try again later."


def _policy() -> service.AuthPolicy:
    return service.AuthPolicy.from_config(current_app.config)


def _pending() -> StaffSession | None:
    """The session of a user who passed the password step but not MFA."""
    row: StaffSession | None = g.get("auth_session")
    return row if row is not None and row.stage == "password" else None


def _next_url() -> str:
    return gate._safe_next(request.args.get("next")) or url_for("main.index")


def _finish_login(user: User, pending: StaffSession, *, method: str) -> None:
    """Swap the half-way session for a full one under a new token."""
    now = utcnow()
    revoke_session(db.session, pending, now=now)
    token, row = start_session(db.session, user, stage="full", now=now, ip_address=request.remote_addr)
    login_service.record_login(db.session, user, row, method=method, now=now)
    db.session.commit()
    gate.start_cookie(token)


def _locked_out(pending: StaffSession) -> ResponseReturnValue:
    """Too many wrong codes at an MFA step (login or enrolment): end the half-way session and go back to the password form."""
    revoke_session(db.session, pending, now=utcnow())
    db.session.commit()
    gate.end_cookie()
    flash("Too many failed attempts: the account is locked for a while. An admin can lift the lock.", "error")
    return redirect(url_for("auth.login"))


@bp.route("/login", methods=["GET", "POST"])
@rbac.login_step
def login() -> ResponseReturnValue:
    if g.get("staff") is not None:
        return redirect(_next_url())
    form = LoginForm()
    if form.validate_on_submit():
        now = utcnow()
        try:
            user = login_service.authenticate(
                db.session, form.email.data or "", form.password.data or "", now=now, policy=_policy(), client_address=request.remote_addr
            )
        except login_service.LoginFailed:
            db.session.commit()  # keep the counted failure and its audit event
            form.password.errors.append(LOGIN_FAILED)
            return render_template("auth/login.html", form=form), 401
        old = _pending()
        if old is not None:
            revoke_session(db.session, old, now=now)
        token, _row = start_session(db.session, user, stage="password", now=now)
        db.session.commit()
        gate.start_cookie(token)
        return redirect(url_for("auth.mfa", next=request.args.get("next")))
    return render_template("auth/login.html", form=form), 200 if request.method in ("GET", "HEAD") else 422


# The endpoint is `auth.mfa`: the gate sends half-logged-in users here.
@bp.route("/login/mfa", methods=["GET", "POST"], endpoint="mfa")
@rbac.login_step
def mfa_step() -> ResponseReturnValue:
    pending = _pending()
    if pending is None:
        return redirect(url_for("auth.login"))
    user = pending.user
    if user.mfa_enrolled_at is None:
        return redirect(url_for("auth.enrol", next=request.args.get("next")))
    form = CodeForm()
    if form.validate_on_submit():
        try:
            method = login_service.verify_second_factor(
                db.session, user, form.code.data or "", now=utcnow(), policy=_policy(), client_address=request.remote_addr
            )
        except login_service.AccountLocked:
            return _locked_out(pending)
        except login_service.LoginFailed:
            db.session.commit()
            gate.end_cookie()
            return redirect(url_for("auth.login"))
        except login_service.MfaFailed:
            db.session.commit()
            form.code.errors.append("The code is wrong, already used or expired. Enter the current code from your app, or a recovery code.")
            return render_template("auth/mfa.html", form=form), 401
        _finish_login(user, pending, method=method)
        if method == "recovery":
            left = login_service.remaining_recovery_codes(db.session, user.id)
            flash(f"You used a recovery code; {left} remain. Regenerate them on your account page if you are running low.", "warning")
        return redirect(_next_url())
    return render_template("auth/mfa.html", form=form), 200 if request.method in ("GET", "HEAD") else 422


def _enrolment_code(user: User, pending: StaffSession) -> ResponseReturnValue:
    """Before any TOTP secret is shown: the single-use code the admin handed over (issue 12 item 6)."""
    form = CodeForm()
    if form.validate_on_submit():
        try:
            onboarding.spend_enrolment_code(db.session, user, form.code.data or "", staff_session_id=pending.id, now=utcnow())
        except onboarding.EnrolmentCodeInvalid as exc:
            db.session.commit()  # the refusal's audit event stays
            form.code.errors.append(str(exc))
            return render_template("auth/enrol_code.html", form=form), 401
        db.session.commit()
        return redirect(url_for("auth.enrol", next=request.args.get("next")))
    return render_template("auth/enrol_code.html", form=form), 200 if request.method in ("GET", "HEAD") else 422


@bp.route("/login/mfa/setup", methods=["GET", "POST"])
@rbac.login_step
def enrol() -> ResponseReturnValue:
    pending = _pending()
    if pending is None:
        return redirect(url_for("auth.login"))
    user = pending.user
    if user.mfa_enrolled_at is not None:
        return redirect(url_for("auth.mfa"))
    if not onboarding.enrolment_allowed(user, staff_session_id=pending.id, now=utcnow()):
        return _enrolment_code(user, pending)
    secret = login_service.begin_enrolment(db.session, user, now=utcnow())
    db.session.commit()
    form = CodeForm()
    status = 200
    if form.validate_on_submit():
        try:
            codes = login_service.confirm_enrolment(db.session, user, form.code.data or "", now=utcnow(), policy=_policy())
        except login_service.AccountLocked:
            return _locked_out(pending)
        except login_service.MfaFailed:
            db.session.commit()
            form.code.errors.append("The code does not match. Check the time on your phone and enter the current code.")
            status = 401
        else:
            onboarding.finish_enrolment(db.session, user)
            _finish_login(user, pending, method="totp")
            return render_template("auth/recovery_codes.html", codes=codes, next_url=_next_url(), first=True)
    elif request.method == "POST":
        status = 422
    uri = mfa.provisioning_uri(secret, account=user.email, issuer=login_service.MFA_ISSUER)
    # segno writes the SVG from the URI alone; nothing user-controlled is interpolated as HTML.
    qr = Markup(mfa.qr_svg(uri))  # noqa: S704 - segno's own SVG markup, see above
    return render_template("auth/enrol.html", form=form, qr=qr, secret=secret), status


@bp.post("/logout")
@rbac.login_step
def logout() -> ResponseReturnValue:
    row: StaffSession | None = g.get("auth_session")
    if row is not None:
        now = utcnow()
        revoke_session(db.session, row, now=now)
        if row.stage == "full":
            login_service.record_logout(db.session, row.user_id, row.id, now=now)
        db.session.commit()
    gate.end_cookie()
    flash("You are logged out.", "success")
    return redirect(url_for("auth.login"))


@bp.get("/account")
@rbac.require(rbac.STAFF)
def account() -> ResponseReturnValue:
    user = service.get_user(db.session, rbac.current_staff().user_id)
    left = login_service.remaining_recovery_codes(db.session, user.id)
    return render_template("auth/account.html", user=user, left=left, password_form=PasswordChangeForm(), codes_form=ReauthForm())


@bp.post("/account/password")
@rbac.require(rbac.STAFF)
def change_password() -> ResponseReturnValue:
    staff = rbac.current_staff()
    form = PasswordChangeForm()
    user = service.get_user(db.session, staff.user_id)
    if form.validate_on_submit():
        if form.new_password.data != form.confirm.data:
            form.confirm.errors.append("The two new passwords differ.")
        else:
            try:
                service.change_own_password(
                    db.session,
                    staff.user_id,
                    form.current_password.data or "",
                    form.new_password.data or "",
                    now=utcnow(),
                    policy=_policy(),
                    keep_session_id=staff.session_id,
                )
            except service.InvalidUser as exc:
                db.session.rollback()
                for name, message in exc.errors.items():
                    getattr(form, name, form.new_password).errors.append(message)
            else:
                db.session.commit()
                flash("Password changed. Your other sessions have been ended.", "success")
                return redirect(url_for("auth.account"))
    left = login_service.remaining_recovery_codes(db.session, user.id)
    return render_template("auth/account.html", user=user, left=left, password_form=form, codes_form=ReauthForm()), 422


@bp.post("/account/recovery-codes")
@rbac.require(rbac.STAFF)
def recovery_codes() -> ResponseReturnValue:
    staff = rbac.current_staff()
    form = ReauthForm()
    user = service.get_user(db.session, staff.user_id)
    if form.validate_on_submit():
        try:
            codes = login_service.regenerate_recovery_codes(
                db.session, staff.user_id, password=form.password.data or "", now=utcnow(), policy=_policy(), keep_session_id=staff.session_id
            )
        except service.InvalidUser as exc:
            db.session.rollback()
            form.password.errors.append(exc.errors.get("password", "Refused."))
        else:
            db.session.commit()
            return render_template("auth/recovery_codes.html", codes=codes, next_url=url_for("auth.account"), first=False)
    left = login_service.remaining_recovery_codes(db.session, user.id)
    return render_template("auth/account.html", user=user, left=left, password_form=PasswordChangeForm(), codes_form=form), 422


@bp.get("/account/sessions")
@rbac.require(rbac.STAFF)
def sessions() -> ResponseReturnValue:
    """The staff member's own live sessions, each with a button to end it."""
    staff = rbac.current_staff()
    rows = own_sessions.live_sessions(db.session, staff.user_id, now=utcnow(), lifetimes=gate.lifetimes(current_app.config))
    return render_template("auth/sessions.html", rows=rows, current=staff.session_id, action=ActionForm())


@bp.post("/account/sessions/<int:session_id>/end")
@rbac.require(rbac.STAFF)
def end_session(session_id: int) -> ResponseReturnValue:
    staff = rbac.current_staff()
    own_sessions.end_own_session(db.session, staff.user_id, session_id, now=utcnow())
    db.session.commit()
    if session_id == staff.session_id:
        gate.end_cookie()
        return redirect(url_for("auth.login"))
    flash("Session ended.", "success")
    return redirect(url_for("auth.sessions"), code=303)
