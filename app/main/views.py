"""The home page and `/healthz` (JSON, no authentication, no personal data)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, render_template
from werkzeug.wrappers import Response

from app.auth import rbac
from app.extensions import db
from app.health import health_report

bp = Blueprint("main", __name__)


@bp.get("/")
@rbac.require(rbac.STAFF)
def index() -> str:
    return render_template("index.html")


@bp.get("/healthz")
@rbac.public
def healthz() -> tuple[Response, int]:
    report = health_report(db, current_app.config)
    return jsonify(report), 200 if report["status"] == "ok" else 503
