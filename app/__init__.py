"""DSR Desk: the application factory."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, request, url_for

from app.web import install_id_converter
from config.settings import config_from_env, owner_only_folder


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app from `config`, or from the environment when None."""
    settings = dict(config) if config is not None else config_from_env()
    app = Flask(__name__, instance_path=settings.get("INSTANCE_PATH"), instance_relative_config=False)
    app.config.update(settings)
    owner_only_folder(Path(app.config["INSTANCE_PATH"]))  # secrets, the SQLite file, checkpoints, the file outbox
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # fontTools logs the glyphs it subsets for the PDF export at INFO: the subject's own characters (issue 12 item 14).
    logging.getLogger("fontTools").setLevel(logging.WARNING)
    register_extensions(app)
    register_domains(app)
    install_id_converter(app)
    register_blueprints(app)
    register_errors(app)
    register_commands(app)
    register_template_helpers(app)
    return app


def register_extensions(app: Flask) -> None:
    """Bind the database, the keyring, CSRF protection and the broker."""
    from app.crypto.keyring import EXTENSION_KEY
    from app.crypto.startup import install_keyring
    from app.extensions import csrf, db
    from app.jobs.broker import DEFAULT_NAMESPACE, app_context, configure_broker

    importlib.import_module("app.models")  # every model, so every encrypted column is registered (keys status, rotation)
    db.init_app(app)
    app.extensions[EXTENSION_KEY] = install_keyring(app.config, db.state(app).engine)
    csrf.init_app(app)
    importlib.import_module("workers")  # sets the broker from the environment (a standalone worker's way) ...
    configure_broker(app.config.get("DRAMATIQ_BROKER_URL"), namespace=app.config.get("DRAMATIQ_NAMESPACE") or DEFAULT_NAMESPACE)  # ... then the app's
    importlib.import_module("workers.all")  # declares every actor on the configured broker, and the periodic jobs

    app_context.attach(app)

    from app.auth.gate import init_app as install_gate

    install_gate(app)  # login, MFA and permission checks before every view; security headers after


def register_domains(app: Flask) -> None:
    """Each domain fills the core's registries (intake handlers, outbound policies): one call per domain."""
    from app.dsr.setup import register as register_dsr
    from app.mail.setup import register as register_mail
    from app.retention.setup import register as register_retention
    from app.subject_data.setup import register as register_subject_data

    register_dsr(app)
    register_subject_data(app)
    register_retention(app)  # legal holds: the engine's one hold check
    register_mail(app)  # the core's own outbound policy, asked last: the per-recipient limit on automatic replies


def register_blueprints(app: Flask) -> None:
    """One blueprint per feature."""
    from app.auth.admin import bp as admin_bp
    from app.auth.audit_page import bp as audit_log_bp
    from app.auth.views import bp as auth_bp
    from app.controllers.views import bp as controllers_bp
    from app.dsr.views import bp as dsr_bp
    from app.mail.views import bp as quarantine_bp
    from app.main.views import bp as main_bp
    from app.retention.views import bp as retention_bp
    from app.subject_data.views import bp as subject_data_bp
    from app.tickets.views import bp as tickets_bp

    app.register_blueprint(main_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(audit_log_bp)
    app.register_blueprint(controllers_bp)
    app.register_blueprint(tickets_bp)
    app.register_blueprint(quarantine_bp)
    app.register_blueprint(dsr_bp)
    app.register_blueprint(subject_data_bp)
    app.register_blueprint(retention_bp)


def register_errors(app: Flask) -> None:
    """Error pages."""
    from app.errors import register_errors as register

    register(app)


def register_commands(app: Flask) -> None:
    """The `flask` command groups of the operator contract."""
    from app.cli import register

    register(app)


def register_template_helpers(app: Flask) -> None:
    """`nav_items()` in every template: the entries the current staff member may open."""
    from app.auth.gate import may_visit
    from app.web import NAV

    def nav_items() -> list[dict[str, Any]]:
        current = request.endpoint or ""
        return [
            {"url": url_for(endpoint), "label": label, "active": current.split(".")[0] == endpoint.split(".")[0]}
            for endpoint, label in NAV
            if may_visit(endpoint)
        ]

    app.jinja_env.globals["nav_items"] = nav_items
    from app.templating import register as register_names

    register_names(app)  # names beside ids, ticket <-> request links, queue counts
