"""Data keys: a random key per controller (and one for the platform), wrapped under a master version."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, Index, Integer, LargeBinary, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, intpk, utc

KEY_STATES = ("active", "retired", "shredded")


class DataKey(Base):
    """One generation of an owner's data key and blind-index key, both wrapped (never stored in clear).

    `owner` is "controller:<id>" or "platform". The active generation encrypts
    new values; retired ones only decrypt until rotation has moved every value
    off them; shredded ones have lost their key material for good.
    """

    __tablename__ = "data_keys"
    __table_args__ = (
        UniqueConstraint("owner", "generation", name="uq_data_keys_owner_generation"),
        CheckConstraint("state IN ('active', 'retired', 'shredded')", name="state"),
        # At most one active generation per owner, enforced by the database.
        Index("ix_data_keys_one_active", "owner", unique=True, sqlite_where=text("state = 'active'"), postgresql_where=text("state = 'active'")),
    )

    id: Mapped[intpk]
    owner: Mapped[str] = mapped_column(String(40))
    controller_id: Mapped[int | None] = mapped_column(Integer, index=True)
    generation: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20))
    master_version: Mapped[int | None] = mapped_column(Integer)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    wrapped_index_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[utc]
    updated_at: Mapped[utc]


PERIOD_KEY_STATES = ("active", "shredded")


class PeriodKey(Base):
    """A data key per calendar period of one purpose (today: "audit", the personal parts of audit events), wrapped.

    Unlike a controller's data key it never rotates onto a new generation (what it encrypts may
    not be rewritten: audit rows are append-only); `keys rotate` re-wraps it under the current
    master version, and retention shreds it once its whole period is past (key material gone,
    the row kept as the record of when).
    """

    __tablename__ = "period_keys"
    __table_args__ = (
        UniqueConstraint("purpose", "period", name="uq_period_keys_purpose_period"),
        CheckConstraint("state IN ('active', 'shredded')", name="state"),
    )

    id: Mapped[intpk]
    purpose: Mapped[str] = mapped_column(String(20))
    period: Mapped[str] = mapped_column(String(7))  # "YYYY-MM", UTC calendar month
    state: Mapped[str] = mapped_column(String(10))
    master_version: Mapped[int | None] = mapped_column(Integer)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[utc]
    shredded_at: Mapped[dt.datetime | None]
