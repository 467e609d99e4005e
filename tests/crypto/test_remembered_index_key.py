"""The platform's blind-index key kept across transactions (Message-ID hashes): checked in the lookup, never used on trust."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import event
from sqlalchemy.orm import Session

from app.crypto import message_ids
from app.crypto.keys import PLATFORM, remember_index_key, remembered_index_key
from app.mail.inbound import IngestSettings, ingest_message
from app.principal import Principal
from tests.mail.conftest import build

BY = Principal.system("tests")
NOW = dt.datetime(2026, 11, 16, 12, 0, tzinfo=dt.UTC)
SETTINGS = IngestSettings(support_address="support@desk.localhost", privacy_address="privacy@desk.localhost")


def plain(**kw: str) -> bytes:
    """A question to the support address: a ticket message, no request (whose own fields are the platform's)."""
    return build(to="support@desk.localhost", **kw)


def statements_of(session: Session, raw: bytes) -> tuple[str, list[str]]:
    """Ingest `raw`; its outcome and its statements, each followed by its parameters."""
    seen: list[str] = []
    listen = event.listens_for(session.connection(), "before_cursor_execute")(lambda *a: seen.append(" ".join(a[2].split()) + f" -- {a[3]!r}"))
    try:
        outcome = ingest_message(session, raw, settings=SETTINGS, by=BY, now=NOW)
    finally:
        event.remove(session.connection(), "before_cursor_execute", listen)
    return outcome.status, seen


def platform_key_queries(statements: list[str]) -> list[str]:
    return [s for s in statements if s.startswith("SELECT data_keys.") and "'platform'" in s]


def test_a_later_transaction_checks_the_remembered_key_in_its_duplicate_lookup(session: Session) -> None:
    ingest_message(session, plain(message_id="<first@example.org>"), settings=SETTINGS, by=BY, now=NOW)
    session.commit()  # a new transaction: its own key cache
    status, statements = statements_of(session, plain(message_id="<second@example.org>", subject="Another"))
    assert status == "stored"
    # The first statement (after the sender's lock on Postgres) looks the Message-ID up and checks the key's row (EXISTS);
    # no query loads the platform key.
    first = next(s for s in statements if not s.startswith("SELECT pg_advisory_xact_lock("))
    assert first.startswith("SELECT ticket_messages.id") and "EXISTS (SELECT data_keys.id FROM data_keys" in first
    assert statements.index(first) == (1 if session.get_bind().dialect.name == "postgresql" else 0)
    assert platform_key_queries(statements) == []
    # And what it stored is found again, in a transaction that loads the key as usual too.
    session.commit()
    assert message_ids.digests(session, ["second@example.org"]) == [message_ids.digest(session, "<second@example.org>")]
    assert statements_of(session, plain(message_id="<second@example.org>", subject="Another"))[0] == "duplicate"


def test_a_remembered_key_whose_row_changed_is_forgotten_and_never_used(session: Session) -> None:
    ingest_message(session, plain(message_id="<kept@example.org>"), settings=SETTINGS, by=BY, now=NOW)
    session.commit()
    known = remembered_index_key(session, PLATFORM)
    assert known is not None
    # Another database under the same URL, or a key row rewritten: same id, other wrapped bytes and index key.
    remember_index_key(session, dataclasses.replace(known, wrapped=b"\x00" * len(known.wrapped), index_key=b"\x01" * 32))
    # The lookup still finds the stored message (the stale key is refused in the same statement, the real one loaded) ...
    assert statements_of(session, plain(message_id="<kept@example.org>"))[0] == "duplicate"
    # ... and the stale key is gone from the process: the one remembered now is the database's.
    again = remembered_index_key(session, PLATFORM)
    assert again is not None and (again.id, again.wrapped, again.index_key) == (known.id, known.wrapped, known.index_key)
    session.commit()
    assert statements_of(session, plain(message_id="<other@example.org>", subject="Other"))[0] == "stored"
    session.commit()
    assert statements_of(session, plain(message_id="<other@example.org>", subject="Other"))[0] == "duplicate"
