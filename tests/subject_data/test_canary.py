"""Erasure leaves no canary of the subject in any table (decrypted) nor, on SQLite, in the database file bytes.

Runs on a really committed database: the erasure is interrupted after two
committed batches (as a killed worker would leave it) and a second run
completes it.
"""

from __future__ import annotations

import json
from pathlib import Path

from flask import Flask
from sqlalchemy import JSON, LargeBinary, String, Text, select, text
from sqlalchemy.engine import make_url

from app.db import Base, utcnow
from app.deletion import messages as message_store
from app.extensions import db
from app.principal import Principal
from app.subject_data import service
from app.subject_data.models import SubjectRun
from tests.factories import TEST_PRINCIPAL
from tests.subject_data.support import CANARIES, CANARY_EMAIL, CANARY_ID, CANARY_NAME, decrypted_hits, instruct, scene


def plain_hits(session) -> list[str]:  # type: ignore[no-untyped-def]
    """Every text or binary column of every table, as stored, that mentions the subject."""
    hits = []
    for table in Base.metadata.sorted_tables:
        columns = [c for c in table.columns if isinstance(c.type, String | Text | LargeBinary)]
        for row in session.execute(select(*columns)) if columns else []:
            for column, value in zip(columns, row, strict=True):
                text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")
                if any(c in text.lower() for c in CANARIES):
                    hits.append(f"{table.name}.{column.name}")
    return hits


def test_erasure_leaves_no_canary_in_any_table_or_in_the_database_file(committed_app: Flask) -> None:
    by = Principal.system("tests")
    with committed_app.app_context():
        with db.session_scope() as session:
            sc = scene(session, messages=10, tickets_count=3)
            instruct(session, sc, "erase")
            run_id = service.start(session, sc.dsr.id, sc.controller.id, "erase", by=TEST_PRINCIPAL, now=utcnow()).id
        with db.session_scope() as session:
            before = decrypted_hits(session)
            ciphertexts = list(before.values())
            assert len(before) > 40 and plain_hits(session) == []
        # Given a worker that died after two committed batches ...
        batch, message_store.BATCH = message_store.BATCH, 8
        try:
            assert service.run_to_end(db.session_scope, run_id, by=by, clock=utcnow, max_steps=3) is False
            with db.session_scope() as session:
                assert session.get(SubjectRun, run_id).state == "running"  # type: ignore[union-attr]
                assert 0 < len(decrypted_hits(session)) < len(before)
            # ... the rerun completes.
            assert service.run_to_end(db.session_scope, run_id, by=by, clock=utcnow) is True
        finally:
            message_store.BATCH = batch
        with db.session_scope() as session:
            run = session.get(SubjectRun, run_id)
            assert run is not None and run.state == "done" and run.report.get("failed", []) == []
            assert decrypted_hits(session) == {} and plain_hits(session) == []
        engine = db.engine
        url = make_url(str(engine.url))
    if url.get_backend_name() != "sqlite":
        return
    db.state(committed_app).engine.dispose()
    path = Path(url.database or "")
    data = path.read_bytes() + (Path(f"{path}-wal").read_bytes() if Path(f"{path}-wal").exists() else b"")
    # secure_delete zeroed the freed cells and pages; the truncated WAL holds no old page image.
    for canary in (CANARY_EMAIL, CANARY_NAME, CANARY_ID):
        assert canary.encode() not in data
    leftovers = [c for c in ciphertexts if c[20:52] in data]
    assert leftovers == [], f"{len(leftovers)} old ciphertexts still in the file"


def _instance_hits(folder: Path, canaries: tuple[str, ...]) -> list[str]:
    """Files under the instance folder (the file outbox included) whose bytes mention a canary."""
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.name.endswith((".db", ".db-wal", ".db-shm", ".sqlite")):
            data = path.read_bytes().lower()
            found += [f"{path.name}: {c}" for c in canaries if c.encode() in data]
    return found


def test_issue_13_canaries_everywhere_leave_no_trace(committed_app: Flask) -> None:
    """Name, email, second address, phone, street, IBAN over own and others' tickets, notes, files and the file outbox: none left."""
    from app.mail.delivery import deliver
    from app.mail.models import OutboxEmail
    from app.mail.outbox import enqueue_email
    from app.mail.outbox_settings import OutboundSettings
    from tests.subject_data.support import CANARY_PHONE_LOCAL, CANARY_STREET, EVERY_CANARY, T0, everywhere

    by = Principal.system("tests")
    settings = OutboundSettings.from_config(committed_app.config)
    instance = Path(str(committed_app.config["INSTANCE_PATH"]))
    with committed_app.app_context():
        with db.session_scope() as session:
            sc = scene(session, messages=4, tickets_count=2)
            where = everywhere(session, sc)
            # A staff reply to another customer quoting the subject, sent (a delivered copy in the file outbox).
            reply = enqueue_email(
                session,
                to="carla@others.example",
                subject="Re: Group booking",
                body_text=f"Hello Carla,\n> {CANARY_NAME} wrote: ring me {CANARY_PHONE_LOCAL}, {CANARY_STREET}",
                related_type="ticket",
                related_id=where.cc_ticket.id,
                controller_id=sc.controller.id,
                kind="reply",
                by=TEST_PRINCIPAL,
                now=T0,
            )
            outbox_ids = [reply.id, *session.scalars(select(OutboxEmail.id).where(OutboxEmail.related_type == "dsr"))]
        for outbox_id in outbox_ids:
            deliver(db.session_scope, outbox_id, settings=settings, clock=lambda: T0)
        assert _instance_hits(instance, EVERY_CANARY), "the scene must put canaries in the file outbox"
        with db.session_scope() as session:
            instruct(session, sc, "erase")
            run_id = service.start(session, sc.dsr.id, sc.controller.id, "erase", by=TEST_PRINCIPAL, now=utcnow()).id
        assert service.run_to_end(db.session_scope, run_id, by=by, clock=utcnow) is True
        with db.session_scope() as session:
            run = session.get(SubjectRun, run_id)
            assert run is not None and run.state == "done" and run.report.get("failed", []) == []
            assert decrypted_hits(session, EVERY_CANARY) == {}
            assert [h for h in plain_hits_of(session, EVERY_CANARY)] == []
        assert _instance_hits(instance, EVERY_CANARY) == []
        url = make_url(str(db.engine.url))
        if url.get_backend_name() != "sqlite":
            assert _postgres_file_hits(db.engine, EVERY_CANARY) == []
            return
    db.state(committed_app).engine.dispose()
    path = Path(url.database or "")
    data = (path.read_bytes() + (Path(f"{path}-wal").read_bytes() if Path(f"{path}-wal").exists() else b"")).lower()
    assert [c for c in EVERY_CANARY if c.encode() in data] == []


def _postgres_file_hits(engine, canaries: tuple[str, ...]) -> list[str]:  # type: ignore[no-untyped-def]
    """The canaries in plaintext anywhere in this database's files on disk (its tables, indexes and TOAST, dead row
    versions included): every personal field is ciphertext and Message-IDs a keyed hash, so none may be there even
    before VACUUM. Needs the server's data directory readable (the test server here runs on this machine)."""
    with engine.connect() as conn:
        conn.execute(text("CHECKPOINT"))  # the buffers reach the files
        data_directory = conn.execute(text("SHOW data_directory")).scalar_one()
        oid = conn.execute(text("SELECT oid FROM pg_database WHERE datname = current_database()")).scalar_one()
    folder = Path(data_directory) / "base" / str(oid)
    assert folder.is_dir(), f"the test database's files are not readable at {folder}"
    found = set()
    for path in folder.iterdir():
        if path.is_file():
            data = path.read_bytes().lower()
            found.update(c for c in canaries if c.encode() in data)
    return sorted(found)


def plain_hits_of(session, canaries: tuple[str, ...]) -> list[str]:  # type: ignore[no-untyped-def]
    """Every text, binary or JSON column of every table, as stored, that mentions a canary."""
    hits = []
    for table in Base.metadata.sorted_tables:
        columns = [c for c in table.columns if isinstance(c.type, String | Text | LargeBinary | JSON)]
        for row in session.execute(select(*columns)) if columns else []:
            for column, value in zip(columns, row, strict=True):
                text = value.decode("utf-8", "replace") if isinstance(value, bytes) else json.dumps(value, ensure_ascii=False)
                hits += [f"{table.name}.{column.name}: {c}" for c in canaries if c in text.lower()]
    return hits
