"""What `/healthz` reports: reachability of the database and the broker, no personal data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.db import Database, utcnow
from app.jobs.broker import broker_status
from app.mail.figures import backlog


def database_status(database: Database) -> str:
    """ "ok" when a trivial query answers, else "unreachable"."""
    try:
        with database.sessionmaker() as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return "unreachable"
    return "ok"


def health_report(database: Database, config: Mapping[str, Any]) -> dict[str, Any]:
    """Status of each dependency; overall "ok" only when the database and broker are."""
    db_state = database_status(database)
    broker_state = broker_status()
    ok = db_state == "ok" and broker_state in ("ok", "in-process")
    return {
        "status": "ok" if ok else "degraded",
        "database": db_state,
        "database_backend": "postgresql" if str(config["DATABASE_URL"]).startswith("postgresql") else "sqlite",
        "broker": broker_state,
        "mail": "smtp" if config.get("SMTP_URL") else "file-outbox",
        "outbox": outbox_backlog(database) if db_state == "ok" else None,
    }


def outbox_backlog(database: Database) -> dict[str, int] | None:
    """Outbound emails per state but sent (numbers only): queued, due, sending, failed, refused."""
    try:
        with database.sessionmaker() as session:
            return backlog(session, now=utcnow())
    except SQLAlchemyError:
        return None
