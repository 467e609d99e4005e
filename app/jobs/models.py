"""One row per named job: its cursor or last run, as JSON."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utc


class JobState(Base):
    """The state of a resumable job (rotation cursor, retention progress) or a heartbeat."""

    __tablename__ = "job_state"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[utc]
