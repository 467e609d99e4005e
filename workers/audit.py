"""Audit actors: the periodic signed checkpoint of the chain head."""

from __future__ import annotations

import dramatiq
from flask import current_app


@dramatiq.actor(max_retries=3, time_limit=60_000)
def audit_checkpoint() -> None:
    """Sign the committed chain head into AUDIT_CHECKPOINT_PATH; a repeat with no new events writes nothing."""
    from app.audit.commands import write_checkpoint

    write_checkpoint(current_app._get_current_object())  # type: ignore[attr-defined]
