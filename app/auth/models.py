"""Staff users, their controller scope, recovery codes and server-side sessions."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.crypto.fields import PLATFORM, EncryptedField, EncryptedRow, encrypted_column
from app.db import Base, intpk, utc

ROLES = ("agent", "privacy_officer", "admin", "auditor")
SESSION_STAGES = ("password", "full")


class User(EncryptedRow, Base):
    """A staff account: bcrypt password, TOTP, role and (for agents) assigned controllers."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('agent', 'privacy_officer', 'admin', 'auditor')", name="role"),)

    id: Mapped[intpk]
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(String(100))
    # The TOTP secret, encrypted with the platform data key; set (not yet confirmed) during enrolment.
    totp_secret_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    totp_secret = EncryptedField("totp_secret_ct", owner=PLATFORM)
    mfa_enrolled_at: Mapped[dt.datetime | None] = mapped_column()
    # The last accepted RFC 6238 time step: a code is accepted only for a later one.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column()
    disabled_at: Mapped[dt.datetime | None] = mapped_column()
    last_login_at: Mapped[dt.datetime | None] = mapped_column()
    password_changed_at: Mapped[utc]
    # Set by someone else (creation, an admin's reset): to be replaced at the next login (issue 12 item 7).
    password_must_change: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # SHA-256 of the single-use code an admin handed over for TOTP enrolment, and when it expires (item 6).
    enrolment_code_hash: Mapped[str | None] = mapped_column(String(64))
    enrolment_code_expires_at: Mapped[dt.datetime | None] = mapped_column()
    created_at: Mapped[utc]
    updated_at: Mapped[utc]

    controllers: Mapped[list[UserController]] = relationship(back_populates="user", cascade="all, delete-orphan", order_by="UserController.controller_id")
    recovery_codes: Mapped[list[RecoveryCode]] = relationship(back_populates="user", cascade="all, delete-orphan")

    @property
    def controller_ids(self) -> list[int]:
        """The controllers assigned to this user (what an agent may see)."""
        return [link.controller_id for link in self.controllers]

    @property
    def is_active(self) -> bool:
        """False once disabled."""
        return self.disabled_at is None

    def is_locked(self, now: dt.datetime) -> bool:
        """True while a lockout runs."""
        return self.locked_until is not None and self.locked_until > now


class UserController(Base):
    """A controller assigned to a staff member (agents see only theirs)."""

    __tablename__ = "user_controllers"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    controller_id: Mapped[int] = mapped_column(ForeignKey("controllers.id", ondelete="CASCADE"), primary_key=True, index=True)

    user: Mapped[User] = relationship(back_populates="controllers")


class RecoveryCode(Base):
    """One single-use recovery code, stored as a SHA-256 hash."""

    __tablename__ = "recovery_codes"

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[utc]
    used_at: Mapped[dt.datetime | None] = mapped_column()

    user: Mapped[User] = relationship(back_populates="recovery_codes")


class StaffSession(EncryptedRow, Base):
    """A server-side login session; the cookie carries only a random token whose SHA-256 is `token_hash`."""

    __tablename__ = "staff_sessions"
    __table_args__ = (CheckConstraint("stage IN ('password', 'full')", name="stage"),)

    id: Mapped[intpk]
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # "password": the first step passed, MFA pending; "full": both steps passed.
    stage: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[utc]
    last_seen_at: Mapped[utc]
    revoked_at: Mapped[dt.datetime | None] = mapped_column()
    # Client address of the login: personal data, so encrypted with the platform data key.
    ip_address_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
    ip_address = EncryptedField("ip_address_ct", owner=PLATFORM)

    user: Mapped[User] = relationship()
