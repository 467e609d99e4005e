"""Retention at app creation (`create_app` calls `register(app)`): its legal holds join the engine's one hold check,
and the engine's record categories (quarantined mail, outbox payloads, staff sessions and login addresses, the audit
log's monthly personal parts: app.retention.audit_parts) its store registry.

Registration is by name and idempotent, so every app a process creates leaves exactly one entry.
"""

from __future__ import annotations

import datetime as dt

from flask import Flask

from app.auth.sessions import Lifetimes
from app.deletion.categories import RECORD_STORES
from app.deletion.holds import HOLDS
from app.deletion.mailstores import OUTBOX_PAYLOADS, QUARANTINED_MAIL
from app.deletion.staff import STAFF_LOGIN_IPS, ended_sessions
from app.retention import holds
from app.retention.audit_parts import AUDIT_PERSONAL_PARTS


def register(app: Flask) -> None:
    """Register the legal-hold check and its describer on the deletion engine (safe to call again)."""
    HOLDS.add("retention.legal_holds", holds.check)
    # The engine's own record categories (the DSR domain registers its own: app.subject_data.setup).
    lifetimes = Lifetimes(
        idle=dt.timedelta(seconds=int(app.config.get("SESSION_IDLE_SECONDS", 1800))),
        absolute=dt.timedelta(seconds=int(app.config.get("SESSION_ABSOLUTE_SECONDS", 43200))),
    )
    for category in (QUARANTINED_MAIL, OUTBOX_PAYLOADS, ended_sessions(lifetimes), STAFF_LOGIN_IPS, AUDIT_PERSONAL_PARTS):
        RECORD_STORES.add(category)
    HOLDS.describe_with("retention.legal_holds", holds.describe)
