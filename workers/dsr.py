"""DSR actors: forward one request to its controllers, and the sweeper pass (every minute)."""

from __future__ import annotations

import datetime as dt

import dramatiq
from flask import current_app

from app.db import utcnow
from app.dsr.dashboard import refresh_chart
from app.dsr.forward import FORWARD_ACTOR, forward
from app.dsr.settings import DsrSettings
from app.dsr.sweeper import FORWARD_INLINE_AFTER, sweep
from app.extensions import db
from app.jobs.doorbell import BROKER_OUTAGE
from app.principal import Principal


@dramatiq.actor(actor_name=FORWARD_ACTOR, max_retries=5, time_limit=60_000, min_backoff=5_000)
def forward_dsr(dsr_id: int) -> None:
    """Forward a request to each controller not yet forwarded to; a no-op when done (duplicates are harmless)."""
    with db.session_scope() as session:
        forward(session, dsr_id, settings=DsrSettings.from_config(current_app.config), by=Principal.system("dsr forward"), now=utcnow())


@dramatiq.actor(max_retries=0, time_limit=60_000)
def sweep_dsrs() -> None:
    """Forward what is pending, escalate 4 h before due, mark missed deadlines (the database is the source of truth).

    While the broker is down (the scheduler runs this itself) no doorbell can reach a worker: forward everything pending here.
    """
    inline_after = dt.timedelta(0) if BROKER_OUTAGE.is_set() else FORWARD_INLINE_AFTER
    with db.session_scope() as session:
        sweep(session, settings=DsrSettings.from_config(current_app.config), by=Principal.system("dsr sweep"), now=utcnow(), inline_after=inline_after)


@dramatiq.actor(max_retries=0, time_limit=120_000)
def refresh_dsr_chart() -> None:
    """Recompute the dashboard's 12-week chart (weekly resolution: every 10 minutes is plenty)."""
    with db.session_scope() as session:
        refresh_chart(session, now=utcnow())
