"""Controller pages: list, create, edit."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
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
    # Outside the scope is a 404 (the service's ControllerNotFound), exactly like an id that does not exist.
    controller = service.get_controller(db.session, controller_id, only_ids=rbac.controller_scope())
    return render_template("controllers/show.html", controller=controller)


@bp.route("/new", methods=["GET", "POST"])
@rbac.require(rbac.CONTROLLERS_MANAGE)
def create() -> ResponseReturnValue:
    form = ControllerForm()
    if form.validate_on_submit():
        try:
            controller = service.create_controller(db.session, form.to_input(), by=current_principal(), now=utcnow())
        except service.InvalidController as exc:
            # The form shows each field's refusal next to it, with what was typed (422).
            db.session.rollback()
            form.add_errors(exc.errors)
        else:
            db.session.commit()
            flash(f"Controller {controller.name} created.", "success")
            return redirect(url_for("controllers.index"))
    return render_template("controllers/form.html", form=form, controller=None), 200 if request.method in ("GET", "HEAD") else 422


@bp.route("/<int:controller_id>", methods=["GET", "POST"])
@rbac.require(rbac.CONTROLLERS_MANAGE)
def edit(controller_id: int) -> ResponseReturnValue:
    controller = service.get_controller(db.session, controller_id)
    form = ControllerForm()
    if request.method in ("GET", "HEAD"):
        form.fill(controller)
    elif form.validate_on_submit():
        try:
            service.update_controller(db.session, controller.id, form.to_input(), by=current_principal(), now=utcnow())
        except service.InvalidController as exc:
            db.session.rollback()
            form.add_errors(exc.errors)
        else:
            db.session.commit()
            flash(f"Controller {controller.name} saved.", "success")
            return redirect(url_for("controllers.index"))
    status = 200 if request.method in ("GET", "HEAD") else 422
    return render_template("controllers/form.html", form=form, controller=controller), status
