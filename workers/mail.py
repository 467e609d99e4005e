"""Outbound mail actors: send one outbox row, and sweep the outbox for due or stale rows."""

from __future__ import annotations

import dramatiq
from flask import current_app

from app.db import utcnow
from app.extensions import db
from app.jobs.doorbell import BROKER_OUTAGE
from app.mail import delivery
from app.mail.outbox import SEND_ACTOR
from app.mail.outbox_settings import OutboundSettings

# A send is bounded by the SMTP timeouts (app.mail.outbox_settings.stale_after_for: the stale-claim window is the
# longest a live send can take, 8 steps x SMTP timeout + 30 s); the time limit only stops a send stuck elsewhere.
SEND_TIME_LIMIT_MS = 120_000


@dramatiq.actor(actor_name=SEND_ACTOR, max_retries=3, time_limit=SEND_TIME_LIMIT_MS, min_backoff=5_000)
def send_email(outbox_id: int) -> None:
    """Deliver one outbox row; a no-op unless it is due, unclaimed and still allowed (duplicates are harmless)."""
    delivery.deliver(db.session_scope, outbox_id, settings=OutboundSettings.from_config(current_app.config), clock=utcnow)


# While the broker is down the scheduler runs the sweep itself and it sends this many rows per pass (DSR forwards first).
INLINE_SENDS = 100


@dramatiq.actor(max_retries=0, time_limit=60_000)
def sweep_outbox() -> None:
    """Re-enqueue every due queued row and every stale sending row; send them here while the broker is down (the database is the source of truth)."""
    settings = OutboundSettings.from_config(current_app.config)
    if BROKER_OUTAGE.is_set():
        with db.session_scope() as session:
            due = delivery.due_for_delivery(session, now=utcnow(), timing=settings.timing, limit=INLINE_SENDS)
        for outbox_id in due:
            delivery.deliver(db.session_scope, outbox_id, settings=settings, clock=utcnow)
        return
    with db.session_scope() as session:
        delivery.sweep(session, now=utcnow(), timing=settings.timing)
