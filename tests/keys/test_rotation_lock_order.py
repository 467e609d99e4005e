"""The start of a rotation takes the active keys' row locks before the audit chain lock, as every writer does.

An ingest holds its data key FOR SHARE from its write to its commit and takes the audit chain lock last (its
events are appended at the end). `rotation.start` used to record `keys.rewrap` (the chain lock) before retiring
the active keys (an UPDATE that waits for the ingest's FOR SHARE): when the two met, Postgres found a deadlock
and one of them was killed (found by review; the window spanned the whole ingest). Now the rotation waits for
the ingest to commit, and both succeed.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from app import create_app
from app.audit import service as audit_service
from app.extensions import db
from app.keys import rotation
from app.mail.inbound import IngestSettings, ingest_committed
from tests.conftest import make_config
from tests.databases import ON_POSTGRES, migrated_database
from tests.factories import TEST_PRINCIPAL, make_controller

pytestmark = pytest.mark.skipif(not ON_POSTGRES, reason="row locks and the deadlock detector are Postgres's (SQLite writes one at a time)")

SETTINGS = IngestSettings(support_address="support@desk.example", privacy_address="privacy@desk.example")
FIRST = b"From: A <a@acme.example>\r\nTo: support@desk.example\r\nSubject: x\r\nMessage-ID: <a1@acme.example>\r\n\r\nhello\r\n"
REPLY = (
    b"From: A <a@acme.example>\r\nTo: support@desk.example\r\nSubject: Re: x\r\nMessage-ID: <a2@acme.example>\r\nIn-Reply-To: <a1@acme.example>\r\n\r\nmore\r\n"
)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Flask]:
    with migrated_database(tmp_path, "lockorder") as url:
        app = create_app(make_config(url, tmp_path / "instance"))
        try:
            yield app
        finally:
            db.state(app).engine.dispose()


def test_a_rotation_starting_while_an_ingest_holds_its_key_waits_for_it_instead_of_deadlocking(desk: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    with desk.app_context():
        with db.session_scope() as session:
            make_controller(session, name="Acme", domains=["acme.example"], dsr_contacts=["dpo@acme.example"])
        assert ingest_committed(db.session_scope, FIRST, settings=SETTINGS, by=TEST_PRINCIPAL, clock=_now, source="test").status == "stored"
    # Given an ingest that has written its message (its key held FOR SHARE) and is about to append its audit events
    at_chain = threading.Event()
    locked_head = audit_service._locked_head

    def paused(session: Session) -> object:
        if threading.current_thread().name == "ingest" and not at_chain.is_set():
            at_chain.set()
            time.sleep(1.5)  # the rotation starts meanwhile
        return locked_head(session)

    monkeypatch.setattr(audit_service, "_locked_head", paused)
    results: dict[str, str] = {}

    def ingest() -> None:
        with desk.app_context():
            try:
                results["ingest"] = ingest_committed(db.session_scope, REPLY, settings=SETTINGS, by=TEST_PRINCIPAL, clock=_now, source="test").status
            except Exception as exc:  # the outcome is the assertion
                results["ingest"] = type(exc).__name__

    def rotate() -> None:
        at_chain.wait(30)
        time.sleep(0.3)
        with desk.app_context():
            try:
                with db.session_scope() as session:
                    rotation.start(session, by=TEST_PRINCIPAL, now=_now())
                results["rotate"] = "started"
            except Exception as exc:  # the outcome is the assertion
                results["rotate"] = type(exc).__name__

    threads = [threading.Thread(target=ingest, name="ingest"), threading.Thread(target=rotate, name="rotate")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # Then both finish: the message stored on its ticket, the rotation started after it (no deadlock, no retry)
    assert results == {"ingest": "stored", "rotate": "started"}
