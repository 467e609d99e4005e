"""The MTA side (issue 15 item 8): the envelope recipient, exit codes a pipe understands, quiet stderr, trimmed originals."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.dsr.models import Dsr
from app.mail.inbound import IngestSettings, ingest_message
from app.mail.models import OutboxEmail
from app.mail.quarantine import QuarantinedMessage
from app.principal import Principal
from app.tickets import service as tickets
from app.tickets.models import Message, Ticket
from config.settings import REPO_ROOT
from tests.mail.conftest import build, corpus
from tests.mail.test_cli import count, database, pipe  # noqa: F401  (the fixture)

BY = Principal.system("tests")
NOW = dt.datetime(2026, 11, 16, 12, 0, tzinfo=dt.UTC)
DESK = IngestSettings(support_address="support@desk.localhost", privacy_address="privacy@desk.localhost")
REQUEST = "Under Article 15 GDPR I request access to all personal data you hold about me. Please also erase my data."


def bcc_request(message_id: str) -> bytes:
    # To support@, Bcc privacy@: the Bcc is in no header, only in the envelope.
    return build(to="support@desk.localhost", subject="My data: access and erasure", body=REQUEST, message_id=message_id)


def dsrs(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Dsr)) or 0)


def test_a_bcc_to_privacy_piped_after_support_opens_the_request_once(session: Session) -> None:
    raw = bcc_request("<bcc-1@example.org>")
    first = ingest_message(session, raw, settings=DESK, by=BY, now=NOW, recipient="support@desk.localhost")
    assert first.status == "stored" and dsrs(session) == 0
    second = ingest_message(session, raw, settings=DESK, by=BY, now=NOW, recipient="Privacy@desk.localhost")
    assert second.status == "duplicate" and second.claim is not None and second.claim.code == "dsr"
    assert dsrs(session) == 1
    dsr = session.scalars(select(Dsr)).one()
    assert dsr.ticket_id == first.ticket_id
    # Delivered again for either recipient (an MTA retry): nothing more.
    for recipient in ("privacy@desk.localhost", "support@desk.localhost"):
        again = ingest_message(session, raw, settings=DESK, by=BY, now=NOW, recipient=recipient)
        assert again.status == "duplicate" and again.claim is None
    assert dsrs(session) == 1
    assert session.scalar(select(func.count()).select_from(Message).where(Message.direction == "inbound")) == 1


def test_the_privacy_run_first_opens_the_request_and_the_support_run_is_a_duplicate(session: Session) -> None:
    raw = bcc_request("<bcc-2@example.org>")
    first = ingest_message(session, raw, settings=DESK, by=BY, now=NOW, recipient="privacy@desk.localhost")
    assert first.status == "stored" and first.claim is not None and first.claim.code == "dsr"
    second = ingest_message(session, raw, settings=DESK, by=BY, now=NOW, recipient="support@desk.localhost")
    assert second.status == "duplicate" and second.claim is None
    assert dsrs(session) == 1


def test_a_message_naming_privacy_in_its_headers_is_not_offered_twice(session: Session) -> None:
    raw = build(to="support@desk.localhost, privacy@desk.localhost", subject="Access request", body=REQUEST, message_id="<both-1@example.org>")
    first = ingest_message(session, raw, settings=DESK, by=BY, now=NOW, recipient="support@desk.localhost")
    assert first.claim is not None and first.claim.code == "dsr"
    second = ingest_message(session, raw, settings=DESK, by=BY, now=NOW, recipient="privacy@desk.localhost")
    assert second.status == "duplicate" and second.claim is None and dsrs(session) == 1


def test_an_attachment_over_the_limit_is_dropped_from_the_stored_original_too(session: Session) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"], msg["Message-ID"] = "Jane Roe <jane.roe@example.org>", "support@desk.localhost", "Files", "<big-1@example.org>"
    msg.set_content("Two files attached.")
    msg.add_attachment(b"small file" * 10, maintype="application", subtype="octet-stream", filename="small.bin")
    big = b"BIGPAYLOAD" + os.urandom(6000)
    msg.add_attachment(big, maintype="application", subtype="pdf", filename="scan.pdf")
    raw = msg.as_bytes()
    settings = IngestSettings(support_address="support@desk.localhost", privacy_address="privacy@desk.localhost", attachment_max_bytes=2000)
    outcome = ingest_message(session, raw, settings=settings, by=BY, now=NOW, recipient="support@desk.localhost")
    assert outcome.status == "stored"
    message = session.get(Message, outcome.message_pk)
    assert message is not None
    assert [a.filename for a in message.attachments] == ["small.bin"]
    stored = b"".join(tickets.raw_original_chunks(session, message))
    assert b"small file" in b"".join(stored.split()) or b"c21hbGwgZmlsZ" in stored  # the kept one is still there (base64)
    assert b"scan.pdf" not in stored and b"removed on arrival" in stored and len(stored) < len(raw) - 6000
    # The officer sees it on the message; the sender is told nothing.
    assert any(n.get("code") == "attachment_dropped" and n.get("content_type") == "application/pdf" for n in message.notes)
    assert session.scalar(select(func.count()).select_from(OutboxEmail)) == 0
    # The same message delivered again is a duplicate, not a second copy.
    again = ingest_message(session, raw, settings=settings, by=BY, now=NOW)
    assert again.status == "duplicate" and again.message_pk == message.id
    ticket = session.get(Ticket, outcome.ticket_id)
    assert ticket is not None and len(ticket.messages) == 1


def pipe_env(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "DESK_", "MASTER_", "SECRET_KEY", "IMAP_", "MAIL_PIPE_LOG"))}
    env.update({"DESK_INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "k" * 40, "MASTER_SECRET": "m" * 40, "DATABASE_URL": database_url})
    env.update(extra)
    return env


def run_pipe(raw: bytes, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "mail", "ingest", *args], input=raw, cwd=REPO_ROOT, env=env, capture_output=True, timeout=120
    )


def test_pipe_bcc_request_piped_twice_opens_the_request_on_the_privacy_run(database: str, tmp_path: Path) -> None:  # noqa: F811
    env = pipe_env(
        database, tmp_path, PRIVACY_ADDRESS="privacy@desk.localhost", SUPPORT_ADDRESS="support@desk.localhost", MAIL_PIPE_LOG=str(tmp_path / "pipe.log")
    )
    raw = bcc_request("<bcc-pipe@example.org>")
    first = run_pipe(raw, env, "--recipient", "support@desk.localhost")
    assert first.returncode == 0 and first.stderr == b"" and first.stdout.startswith(b"stored: ticket ")
    assert count(database, Dsr) == 0
    second = run_pipe(raw, env, "--recipient", "privacy@desk.localhost")
    assert second.returncode == 0 and second.stderr == b"" and second.stdout.startswith(b"duplicate: ticket ") and b"(dsr)" in second.stdout
    third = run_pipe(raw, env, "--recipient", "privacy@desk.localhost")
    assert third.returncode == 0 and b"(dsr)" not in third.stdout
    assert count(database, Dsr) == 1


def test_pipe_quarantined_is_accepted_with_nothing_on_stderr(database: str, tmp_path: Path) -> None:  # noqa: F811
    result = run_pipe(corpus("hostile_no_headers.eml"), pipe_env(database, tmp_path, MAIL_PIPE_LOG=str(tmp_path / "pipe.log")))
    assert result.returncode == 0 and result.stderr == b""
    assert result.stdout.startswith(b"quarantined ")
    assert count(database, QuarantinedMessage) == 1


def test_pipe_configuration_error_exits_78_and_logs_it_off_stderr(tmp_path: Path) -> None:
    log = tmp_path / "pipe.log"
    env = pipe_env(f"sqlite:///{tmp_path / 'desk.db'}", tmp_path, DESK_ENV="production", MAIL_PIPE_LOG=str(log))
    del env["MASTER_SECRET"]
    result = run_pipe(build(), env, "--recipient", "privacy@desk.localhost")
    assert result.returncode == 78, result.stdout
    assert result.stderr == b"" and b"MASTER_SECRET" not in result.stdout
    assert "MASTER_SECRET" in log.read_text()


def test_pipe_database_unreachable_exits_75_with_nothing_on_stderr(tmp_path: Path) -> None:
    log = tmp_path / "pipe.log"
    result = run_pipe(build(), pipe_env("postgresql://nobody@127.0.0.1:1/none", tmp_path, MAIL_PIPE_LOG=str(log)), "--recipient", "privacy@desk.localhost")
    assert result.returncode == 75 and result.stderr == b""
    assert b"temporary failure" in result.stdout
    assert "temporary failure" in log.read_text()
