"""Encrypted fields: round trip, fresh nonces, blind-index lookups, clear failures on tampering."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from app.controllers.models import ControllerContact
from app.crypto.cipher import DecryptionError
from tests.factories import make_controller

CANARY = "canary-7f3a91@plaintext.example"


def raw_ciphertexts(session: Session) -> list[bytes]:
    return [bytes(r[0]) for r in session.execute(text("SELECT email_ct FROM controller_contacts"))]


def test_round_trip_and_blind_index_lookup(session: Session) -> None:
    # Given a controller whose DSR contact is stored encrypted
    c = make_controller(session, dsr_contacts=[CANARY])
    session.expire_all()
    # When it is read back in a fresh load
    contact = session.scalars(select(ControllerContact).where(ControllerContact.controller_id == c.id)).one()
    # Then the address decrypts, and a lookup by the normalised address finds it in one query
    assert contact.email == CANARY
    found = session.scalars(select(ControllerContact).where(ControllerContact.email.matches(session, f"  {CANARY.upper()} ", controller_id=c.id))).all()
    assert [f.id for f in found] == [contact.id]
    other = make_controller(session)
    assert session.scalars(select(ControllerContact).where(ControllerContact.email.matches(session, CANARY, controller_id=other.id))).all() == []
    # And the plaintext is nowhere in the stored column
    assert all(CANARY.encode() not in blob for blob in raw_ciphertexts(session))


def test_two_encryptions_of_one_value_differ(session: Session) -> None:
    a = make_controller(session, dsr_contacts=[CANARY])
    b = make_controller(session, dsr_contacts=[CANARY])
    blobs = session.execute(select(ControllerContact.email_ct).where(ControllerContact.controller_id.in_([a.id, b.id]))).scalars().all()
    assert len(set(blobs)) == 2


def test_flipped_byte_fails_clearly(session: Session) -> None:
    c = make_controller(session, dsr_contacts=[CANARY])
    contact = c.contacts[0]
    blob = bytearray(contact.email_ct)
    blob[-1] ^= 1
    session.execute(update(ControllerContact).where(ControllerContact.id == contact.id).values(email_ct=bytes(blob)))
    session.expire_all()
    reloaded = session.get(ControllerContact, contact.id)
    assert reloaded is not None
    with pytest.raises(DecryptionError, match="authentication failed"):
        _ = reloaded.email
