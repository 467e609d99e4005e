"""Retention actor: the daily run (scheduled at RETENTION_RUN_AT, a cron expression, by workers.scheduler)."""

from __future__ import annotations

import dramatiq
from flask import current_app

from app.db import utcnow
from app.extensions import db
from app.retention.schedule import scheduled_run


@dramatiq.actor(max_retries=0, time_limit=6 * 3600 * 1000)
def run_retention() -> None:
    """Run retention under the cross-process lock (a no-op while another run holds it); a stopped or killed run is resumed."""
    scheduled_run(db.session_scope, current_app.config, db.engine, clock=utcnow)
