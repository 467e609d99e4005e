"""Retention at app creation (`create_app` calls `register(app)`): its legal holds join the engine's one hold check.

Registration is by name and idempotent, so every app a process creates leaves exactly one entry.
"""

from __future__ import annotations

from flask import Flask

from app.deletion.holds import HOLDS
from app.retention import holds


def register(app: Flask) -> None:
    """Register the legal-hold check and its describer on the deletion engine (safe to call again)."""
    HOLDS.add("retention.legal_holds", holds.check)
    HOLDS.describe_with("retention.legal_holds", holds.describe)
