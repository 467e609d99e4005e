"""The LMTP listener (issue 15 item 8e): one status per recipient, the same ingest service, 4xx on a database outage."""

from __future__ import annotations

import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Flask
from sqlalchemy import func, select

from app import create_app
from app.db import utcnow
from app.dsr.models import Dsr
from app.extensions import db
from app.mail.inbound import IngestOutcome, IngestSettings, ingest_committed
from app.mail.lmtp import Deliver, listener
from app.principal import Principal
from app.tickets.models import Message
from config.settings import REPO_ROOT
from tests.conftest import make_config
from tests.loopback import free_port
from tests.mail.test_cli import count, database  # noqa: F401  (the fixture)
from tests.mail.test_mta import DESK, bcc_request, pipe_env

BY = Principal.system("tests lmtp")


def desk_delivery(app: Flask, settings: IngestSettings = DESK) -> Deliver:
    """As `mail lmtp` delivers: a committed ingest per recipient, in the app's context."""

    def deliver(raw: bytes, recipient: str) -> IngestOutcome:
        with app.app_context():
            return ingest_committed(db.session_scope, raw, settings=settings, by=BY, clock=utcnow, source="lmtp", recipient=recipient)

    return deliver


@contextmanager
def lmtp_client(deliver: Deliver) -> Iterator[smtplib.LMTP]:
    port = free_port()
    server = listener(deliver, "127.0.0.1", port, data_size_limit=10_000_000)
    server.start()
    try:
        client = smtplib.LMTP("127.0.0.1", port, timeout=30)
        try:
            yield client
        finally:
            client.close()
    finally:
        server.stop()


def send(client: smtplib.LMTP, raw: bytes, recipients: list[str]) -> list[tuple[int, bytes]]:
    """MAIL, RCPT each, DATA; then read the one reply per recipient LMTP gives (smtplib reads only the first)."""
    client.ehlo_or_helo_if_needed()  # LHLO for smtplib.LMTP
    assert client.mail("jane.roe@example.org")[0] == 250
    for recipient in recipients:
        assert client.rcpt(recipient)[0] == 250
    replies = [client.data(raw)]
    replies += [client.getreply() for _ in recipients[1:]]
    return replies


def test_a_message_to_two_recipients_gets_two_statuses_and_opens_one_request(committed_app: Flask) -> None:
    with lmtp_client(desk_delivery(committed_app)) as client:
        replies = send(client, bcc_request("<lmtp-1@example.org>"), ["support@desk.localhost", "privacy@desk.localhost"])
        assert [code for code, _ in replies] == [250, 250]
        assert replies[0][1].startswith(b"2.0.0 stored") and replies[1][1].startswith(b"2.0.0 duplicate")
        # The MTA retries (it never saw the statuses, say): nothing more.
        again = send(client, bcc_request("<lmtp-1@example.org>"), ["privacy@desk.localhost"])
        assert again[0][0] == 250
    with committed_app.app_context(), db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Dsr)) == 1
        assert session.scalar(select(func.count()).select_from(Message).where(Message.direction == "inbound")) == 1


def test_a_database_outage_gives_a_temporary_failure_per_recipient(tmp_path: Path) -> None:
    down = create_app(make_config("postgresql://nobody@127.0.0.1:1/none", tmp_path))
    with lmtp_client(desk_delivery(down)) as client:
        replies = send(client, bcc_request("<lmtp-2@example.org>"), ["support@desk.localhost", "privacy@desk.localhost"])
    assert [code for code, _ in replies] == [451, 451]
    assert all(b"temporary failure" in text for _, text in replies)


def test_the_command_listens_until_sigterm(database: str, tmp_path: Path) -> None:  # noqa: F811
    port = free_port()
    env = pipe_env(database, tmp_path, PRIVACY_ADDRESS="privacy@desk.localhost", SUPPORT_ADDRESS="support@desk.localhost")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "mail", "lmtp", "--bind", f"127.0.0.1:{port}"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client = smtplib.LMTP("127.0.0.1", port, timeout=30)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else b""
                time.sleep(0.2)
        try:
            replies = send(client, bcc_request("<lmtp-3@example.org>"), ["support@desk.localhost", "privacy@desk.localhost"])
        finally:
            client.close()
        assert [code for code, _ in replies] == [250, 250]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and b"mail lmtp: stopped" in out
    assert count(database, Dsr) == 1
