"""A canary in old quarantined mail, a delivered email, a closed request, its instruction and its export is gone after a
retention run: from every table (decrypted), as stored, and from the SQLite file."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from flask import Flask
from sqlalchemy.engine import make_url

from app.db import utcnow
from app.dsr.requests import DsrInput, create_dsr
from app.extensions import db
from app.jobs.locks import ProcessLock
from app.mail import quarantine
from app.retention import runner
from app.retention.schedule import run_lock
from tests.factories import make_controller, make_instruction
from tests.retention.records import export_file, sent_email
from tests.retention.support import SYSTEM
from tests.subject_data.support import CANARIES, CANARY_EMAIL, CANARY_ID, CANARY_NAME, decrypted_hits, raw_mail
from tests.subject_data.test_canary import plain_hits

LONG_AGO = dt.datetime(2021, 3, 1, 9, 0, tzinfo=dt.UTC)


def test_a_canary_in_old_records_is_gone_from_every_table_and_the_file(committed_app: Flask) -> None:
    with committed_app.app_context():
        # Given, long ago: quarantined mail from the subject, a closed request about them with the controller's reply,
        # its export file, and the delivered email that answered them
        with db.session_scope() as session:
            controller = make_controller(session)
            quarantine.hold(session, raw_mail(1), reason="malformed", detail="test", source="test", by=SYSTEM, now=LONG_AGO)
            data = DsrInput(
                types=["access"],
                subject_email=CANARY_EMAIL,
                subject_name=CANARY_NAME,
                subject_identifiers=CANARY_ID,
                request_text=f"I, {CANARY_NAME}, want a copy.",
            )
            dsr = create_dsr(session, data, source="staff", received_at=LONG_AGO, ticket=None, controller_ids=[controller.id], by=SYSTEM, now=LONG_AGO)
            contact = controller.contact_emails("dsr")[0]
            make_instruction(session, dsr, controller_id=controller.id, sender_email=contact, reply_text=f"Send {CANARY_NAME} the data.", now=LONG_AGO)
            dsr.state, dsr.is_open, dsr.closed_at = "closed", False, LONG_AGO
            export_file(session, dsr, controller, LONG_AGO, content=json.dumps({"subject": {"name": CANARY_NAME, "email": CANARY_EMAIL}}).encode())
            sent_email(session, None, controller, CANARY_EMAIL, LONG_AGO, related_type="dsr", related_id=dsr.id)
        with db.session_scope() as session:
            ciphertexts = list(decrypted_hits(session).values())
            assert len(ciphertexts) >= 8 and plain_hits(session) == []
        # When the retention run takes what is past its period
        lock: ProcessLock = run_lock(committed_app.config, db.engine)
        with lock:
            result = runner.execute(db.session_scope, by=SYSTEM, clock=utcnow)
        assert result.progress.finished
        # Then no table holds the canary, decrypted or as stored
        with db.session_scope() as session:
            assert decrypted_hits(session) == {} and plain_hits(session) == []
            row = runner.ledger(session, limit=1)[0]
            assert row.state == "done", json.dumps(row.errors)
        url = make_url(str(db.engine.url))
    if url.get_backend_name() != "sqlite":
        return
    db.state(committed_app).engine.dispose()
    path = Path(url.database or "")
    data = path.read_bytes() + (Path(f"{path}-wal").read_bytes() if Path(f"{path}-wal").exists() else b"")
    # secure_delete zeroed the freed and rewritten cells; the WAL was truncated after each engine run
    assert [c for c in CANARIES if c.encode() in data.lower()] == []
    assert [c for c in ciphertexts if c[20:52] in data] == []
