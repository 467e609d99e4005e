"""Controller pages: list, create, edit."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from app.auth import rbac
from app.controllers import service
from app.controllers.forms import ControllerForm
from app.db import utcnow
from app.extensions import db
from app.web import current_principal, page_args

bp = Blueprint("controllers", __name__, url_prefix="/controllers")


@bp.get("/")
@rbac.require(rbac.CONTROLLERS_READ)
def index() -> str:
    page, size = page_args(request)
    scope = rbac.controller_scope()  # agents: only the controllers assigned to them
    listing = service.list_page(db.session, offset=(page - 1) * size, limit=size, only_ids=scope)
    return render_template("controllers/index.html", controllers=listing.rows, page=page, size=size, total=listing.total)


@bp.get("/<int:controller_id>/view")
@rbac.require(rbac.CONTROLLERS_READ)
def show(controller_id: int) -> str:
    # Outside the scope is a 404, exactly like an id that does not exist.
    rbac.ensure_controller_visible(controller_id)
    try:
        controller = service.get_controller(db.session, controller_id)
    except service.ControllerNotFound:
        abort(404)
    return render_template("controllers/show.html", controller=controller)


@bp.route("/new", methods=["GET", "POST"])
@rbac.require(rbac.CONTROLLERS_MANAGE)
def create() -> ResponseReturnValue:
    form = ControllerForm()
    if form.validate_on_submit():
        try:
            controller = service.create_controller(db.session, form.to_input(), by=current_principal(), now=utcnow())
        except service.InvalidController as exc:
            db.session.rollback()
            form.add_errors(exc.errors)
        else:
            db.session.commit()
            flash(f"Controller {controller.id} created.", "success")
            return redirect(url_for("controllers.index"))
    return render_template("controllers/form.html", form=form, controller=None), 200 if request.method == "GET" else 422


@bp.route("/<int:controller_id>", methods=["GET", "POST"])
@rbac.require(rbac.CONTROLLERS_MANAGE)
def edit(controller_id: int) -> ResponseReturnValue:
    try:
        controller = service.get_controller(db.session, controller_id)
    except service.ControllerNotFound:
        abort(404)
    form = ControllerForm()
    if request.method == "GET":
        form.name.data = controller.name
        for kind in ("dsr", "breach", "subprocessor"):
            getattr(form, f"{kind}_contacts").data = "\n".join(controller.contact_emails(kind))
        form.domains.data = "\n".join(d.domain for d in controller.domains)
        form.identifiers.data = "\n".join(i.identifier for i in controller.identifiers)
        form.status.data = controller.status
        form.terminated_on.data = controller.terminated_on
        form.termination_option.data = controller.termination_option or ""
    elif form.validate_on_submit():
        try:
            service.update_controller(db.session, controller.id, form.to_input(), by=current_principal(), now=utcnow())
        except service.InvalidController as exc:
            db.session.rollback()
            form.add_errors(exc.errors)
        else:
            db.session.commit()
            flash(f"Controller {controller.id} saved.", "success")
            return redirect(url_for("controllers.index"))
    status = 200 if request.method == "GET" else 422
    return render_template("controllers/form.html", form=form, controller=controller), status
