"""Encrypted fields: round trip, fresh nonces, blind-index lookups, clear failures on tampering."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import event, select, text, update
from sqlalchemy.orm import Session

from app import create_app
from app import migrations as desk_migrations
from app.audit.models import AuditEvent
from app.controllers.models import ControllerContact
from app.crypto.cipher import DecryptionError, key_id_of
from app.crypto.keys import forget_keys, preload_keys
from app.db import utcnow
from app.extensions import db
from app.keys.service import shred_controller_keys
from app.tickets import service as tickets
from app.tickets.models import Ticket
from tests.conftest import make_config
from tests.factories import TEST_PRINCIPAL, make_controller

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


def _contact(session: Session, contact_id: int) -> ControllerContact:
    session.expire_all()
    found = session.get(ControllerContact, contact_id)
    assert found is not None
    return found


def _store(session: Session, contact_id: int, blob: bytes) -> None:
    session.execute(update(ControllerContact).where(ControllerContact.id == contact_id).values(email_ct=blob))


def test_value_moved_to_another_row_or_relabelled_to_another_key_fails(session: Session) -> None:
    # Given two controllers, each with a contact under its own data key
    a = make_controller(session, dsr_contacts=["a@a.example"], breach_contacts=["b@a.example"])
    b = make_controller(session, dsr_contacts=["c@b.example"])
    a_dsr, a_breach, b_dsr = a.contacts[0], a.contacts[1], b.contacts[0]
    a_blob, b_blob = bytes(a_dsr.email_ct), bytes(b_dsr.email_ct)
    # When A's DSR ciphertext is copied onto A's breach contact (same key, another row)
    _store(session, a_breach.id, a_blob)
    with pytest.raises(DecryptionError, match="authentication failed"):
        _ = _contact(session, a_breach.id).email
    # When B's ciphertext is relabelled to name A's key
    _store(session, b_dsr.id, a_blob[:5] + b_blob[5:])
    with pytest.raises(DecryptionError, match="authentication failed"):
        _ = _contact(session, b_dsr.id).email
    # When it names a key that does not exist
    _store(session, b_dsr.id, b"\x01\x00\x0f\x42\x40" + b_blob[5:])
    with pytest.raises(DecryptionError, match="does not exist"):
        _ = _contact(session, b_dsr.id).email
    # Then the untouched value still reads
    assert _contact(session, a_dsr.id).email == "a@a.example"


def test_shredding_makes_a_controllers_values_undecryptable_and_is_audited(session: Session) -> None:
    # Given two controllers with contacts
    doomed = make_controller(session, dsr_contacts=["gone@doomed.example"])
    kept = make_controller(session, dsr_contacts=["stays@kept.example"])
    doomed_contact, kept_contact = doomed.contacts[0].id, kept.contacts[0].id
    session.flush()
    # When the first one's keys are shredded
    destroyed = shred_controller_keys(session, doomed.id, by=TEST_PRINCIPAL, now=utcnow())
    # Then its values fail with a clear error, the other's still read, and the audit log says so with ids only
    assert destroyed == 1
    with pytest.raises(DecryptionError, match="shredded"):
        _ = _contact(session, doomed_contact).email
    lookup = ControllerContact.email.matches(session, "gone@doomed.example", controller_id=doomed.id)
    assert session.scalars(select(ControllerContact).where(lookup)).all() == []
    assert _contact(session, kept_contact).email == "stays@kept.example"
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "keys.shred").order_by(AuditEvent.seq.desc())).first()
    assert event is not None and event.target_id == str(doomed.id) and "gone@" not in event.details_json
    assert shred_controller_keys(session, doomed.id, by=TEST_PRINCIPAL, now=utcnow()) == 0


def test_canary_never_reaches_the_sqlite_file(tmp_path: Path) -> None:
    # Given a real, committed SQLite database (whatever backend the suite runs on)
    url = f"sqlite:///{tmp_path / 'canary.sqlite3'}"
    desk_migrations.upgrade(url)
    app = create_app(make_config(url, tmp_path / "instance"))
    with app.app_context():
        with db.session_scope() as s:
            make_controller(s, dsr_contacts=[CANARY], breach_contacts=[CANARY.upper()])
        with db.session_scope() as s:
            found = s.scalars(select(ControllerContact).where(ControllerContact.email.matches(s, CANARY, controller_id=1))).all()
            assert [c.email for c in found] == [CANARY, CANARY]  # the service stores addresses lowercased
        db.state(app).engine.dispose()
    # Then neither the main file nor the WAL holds the plaintext in any case
    files = [p for p in tmp_path.glob("canary.sqlite3*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes().lower()
        assert CANARY.encode() not in data, path.name


def test_preloading_a_page_of_keys_takes_one_query(session: Session) -> None:
    # Given contacts of three controllers, each under its own data key
    ids = [make_controller(session).id for _ in range(3)]
    session.expire_all()
    contacts = session.scalars(select(ControllerContact).where(ControllerContact.controller_id.in_(ids))).all()
    forget_keys(session)
    statements: list[str] = []
    listen = event.listens_for(session.connection(), "before_cursor_execute")(lambda *a: statements.append(a[2]))
    # When the page's keys are preloaded and every address read
    preload_keys(session, [key_id_of(c.email_ct) for c in contacts])
    emails = [c.email for c in contacts]
    event.remove(session.connection(), "before_cursor_execute", listen)
    # Then one statement loaded every key and the reads needed none
    assert len(statements) == 1 and "data_keys" in statements[0]
    assert all(e and e.endswith(".example") for e in emails)


def _ticket(session: Session, controller_id: int, email: str) -> Ticket:
    who = {"requester_name": "Jo", "requester_email": email, "subject": "Hi"}
    return tickets.create_ticket(session, controller_id=controller_id, **who, by=TEST_PRINCIPAL, now=utcnow())


def test_a_transaction_asks_for_the_active_key_once_and_again_after_a_savepoint(session: Session) -> None:
    # Given a controller whose data key exists
    c = make_controller(session, dsr_contacts=["first@once.example"])
    session.flush()
    statements: list[str] = []
    listen = event.listens_for(session.connection(), "before_cursor_execute")(lambda *a: statements.append(a[2]))
    # The active-key lookup (FOR SHARE on Postgres): by owner and state = 'active'
    asked = lambda: sum("FROM data_keys" in s and "data_keys.owner =" in s and "data_keys.state =" in s for s in statements)  # noqa: E731
    # When two tickets (three encrypted values each) are written in the same transaction
    for n in range(2):
        _ticket(session, c.id, f"jo{n}@once.example")
    # Then the active key was looked up (and locked) once: at the controller's first write, before these
    before_savepoint = asked()
    # When a savepoint that wrote a value ends
    with session.begin_nested():
        _ticket(session, c.id, "jo@inside.example")
    _ticket(session, c.id, "jo@after.example")
    event.remove(session.connection(), "before_cursor_execute", listen)
    # Then the next write asked again (locks taken in a savepoint can go with it), and every value still reads
    assert before_savepoint == 0 and asked() == 1
    found = session.scalars(select(Ticket).where(Ticket.controller_id == c.id)).all()
    assert sorted(t.requester_email or "" for t in found) == ["jo0@once.example", "jo1@once.example", "jo@after.example", "jo@inside.example"]
