"""Controllers, their notice contacts and the domains and identifiers that route mail to them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, Date, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.crypto.fields import EncryptedField, EncryptedRow, blind_index_column, encrypted_column
from app.db import Base, intpk, utc

CONTACT_KINDS = ("dsr", "breach", "subprocessor")
STATUSES = ("active", "terminated")
TERMINATION_OPTIONS = ("return", "delete")


class Controller(Base):
    """A client company for which the desk processes personal data."""

    __tablename__ = "controllers"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'terminated')", name="status"),
        CheckConstraint("termination_option IN ('return', 'delete')", name="termination_option"),
    )

    id: Mapped[intpk]
    name: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="active")
    terminated_on: Mapped[dt.date | None] = mapped_column(Date())
    termination_option: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[utc]
    updated_at: Mapped[utc]

    contacts: Mapped[list[ControllerContact]] = relationship(back_populates="controller", cascade="all, delete-orphan", order_by="ControllerContact.id")
    domains: Mapped[list[ControllerDomain]] = relationship(back_populates="controller", cascade="all, delete-orphan", order_by="ControllerDomain.domain")
    identifiers: Mapped[list[ControllerIdentifier]] = relationship(
        back_populates="controller", cascade="all, delete-orphan", order_by="ControllerIdentifier.identifier"
    )

    def contact_emails(self, kind: str) -> list[str]:
        """The addresses that receive notices of one kind (dsr, breach, subprocessor)."""
        return [c.email or "" for c in self.contacts if c.kind == kind]


class ControllerContact(EncryptedRow, Base):
    """An address of the controller's representatives for one kind of notice.

    The address is personal data of the representative (WECO §3.1(c)), so it is
    stored encrypted under the controller's data key, with a blind index.
    """

    __tablename__ = "controller_contacts"
    __table_args__ = (CheckConstraint("kind IN ('dsr', 'breach', 'subprocessor')", name="kind"),)

    id: Mapped[intpk]
    controller_id: Mapped[int] = mapped_column(ForeignKey("controllers.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    email_ct: Mapped[bytes] = encrypted_column()
    email_bidx: Mapped[bytes | None] = blind_index_column()
    email = EncryptedField("email_ct", owner="controller_id", blind_index="email_bidx", normalise="email")

    controller: Mapped[Controller] = relationship(back_populates="contacts")


class ControllerDomain(Base):
    """An email domain whose senders belong to this controller; one controller per domain."""

    __tablename__ = "controller_domains"

    id: Mapped[intpk]
    controller_id: Mapped[int] = mapped_column(ForeignKey("controllers.id", ondelete="CASCADE"), index=True)
    domain: Mapped[str] = mapped_column(String(253), unique=True)

    controller: Mapped[Controller] = relationship(back_populates="domains")


class ControllerIdentifier(Base):
    """An account identifier (e.g. a customer number) that routes a message to this controller."""

    __tablename__ = "controller_identifiers"
    __table_args__ = (UniqueConstraint("identifier", name="uq_controller_identifiers_identifier"),)

    id: Mapped[intpk]
    controller_id: Mapped[int] = mapped_column(ForeignKey("controllers.id", ondelete="CASCADE"), index=True)
    identifier: Mapped[str] = mapped_column(String(100))

    controller: Mapped[Controller] = relationship(back_populates="identifiers")
