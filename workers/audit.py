"""Audit actors: the periodic signed checkpoint of the chain head."""

from __future__ import annotations

import dramatiq
from flask import current_app

from app.audit.service import sign_checkpoint
from app.crypto.keyring import get_keyring
from app.db import utcnow
from app.extensions import db


@dramatiq.actor(max_retries=3, time_limit=60_000)
def audit_checkpoint() -> None:
    """Sign the committed chain head into AUDIT_CHECKPOINT_PATH; a repeat with no new events writes nothing."""
    with db.session_scope() as session:
        sign_checkpoint(session, current_app.config, get_keyring(current_app), now=utcnow())
