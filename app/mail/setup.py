"""Mail's own part of app creation: the core's outbound policy against mail loops (`create_app` calls `register(app)`)."""

from __future__ import annotations

from flask import Flask

from app.mail import ratelimit
from app.mail.outbox_settings import check_own_addresses
from app.mail.policies import POLICIES


def register(app: Flask) -> None:
    """Register the per-recipient automatic-reply limit from AUTO_REPLY_LIMIT / AUTO_REPLY_WINDOW_HOURS (idempotent)."""
    POLICIES.add(ratelimit.POLICY_NAME, ratelimit.AutoReplyLimit.from_config(app.config))
    check_own_addresses(app.config)  # the desk's own addresses pass the outbox's rules (production: a start-up error)
