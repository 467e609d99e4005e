"""`mail poll` against a real IMAP server (dovecot on loopback, TLS verified against the test's own CA)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.crypto.message_ids import digests
from app.db import utcnow
from app.extensions import db
from app.mail.imap import ImapError, ImapSettings, connect, poll_once
from app.mail.inbound import IngestSettings, ingest_committed
from app.principal import Principal
from app.tickets.models import Message
from tests.mail.conftest import build
from tests.mail.dovecot import Dovecot, running_dovecot

SETTINGS = IngestSettings(support_address="privacy@desk.localhost")


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


@pytest.fixture
def server(dovecot: Dovecot) -> Dovecot:
    """The server with an empty INBOX and processed folder."""
    conn = dovecot.client()
    try:
        for box in ("INBOX", "Processed"):
            typ, data = conn.select(box)
            if typ == "OK" and int(data[0] or 0):
                conn.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
                conn.expunge()
    finally:
        conn.logout()
    return dovecot


@pytest.fixture(autouse=True)
def app_context(app: Flask) -> Iterator[None]:
    """The ingest edge runs inside the app, as the CLI and the actor do."""
    with app.app_context():
        yield


def ingest(raw: bytes) -> str:
    return ingest_committed(db.session_scope, raw, settings=SETTINGS, by=Principal.system("tests"), clock=utcnow, source="imap").status


def stored(session: Session, message_id: str) -> int:
    return int(session.scalar(select(func.count()).select_from(Message).where(Message.message_id_bidx.in_(digests(session, [message_id])))) or 0)


def test_poll_stores_each_message_then_moves_it(server: Dovecot, session: Session) -> None:
    for n in range(3):
        server.append(build(message_id=f"<imap-{n}@example.org>", subject=f"IMAP {n}"))
    result = poll_once(ImapSettings.from_url(server.url(), ca_file=server.ca_file), ingest)
    assert (result.fetched, result.stored, result.moved, result.failed) == (3, 3, 3, 0)
    assert (server.count("INBOX"), server.count("Processed")) == (0, 3)
    assert all(stored(session, f"imap-{n}@example.org") == 1 for n in range(3))


def test_crash_before_the_move_refetches_and_the_second_ingest_is_a_no_op(server: Dovecot, session: Session) -> None:
    server.append(build(message_id="<crash-1@example.org>"))

    def commit_then_die(raw: bytes) -> str:
        ingest(raw)  # committed ...
        raise SystemError("worker killed before the IMAP move")  # ... but never moved

    crashed = poll_once(ImapSettings.from_url(server.url(), ca_file=server.ca_file), commit_then_die)
    assert (crashed.failed, crashed.moved, server.count("INBOX")) == (1, 0, 1)
    again = poll_once(ImapSettings.from_url(server.url(), ca_file=server.ca_file), ingest)
    assert (again.duplicates, again.moved) == (1, 1)
    assert (server.count("INBOX"), server.count("Processed")) == (0, 1)
    assert stored(session, "crash-1@example.org") == 1


def test_failed_ingest_leaves_the_message_in_the_inbox(server: Dovecot) -> None:
    server.append(build(message_id="<down-1@example.org>"))

    def database_down(raw: bytes) -> str:
        raise ConnectionError("database unreachable")

    result = poll_once(ImapSettings.from_url(server.url(), ca_file=server.ca_file), database_down)
    assert (result.failed, result.moved, server.count("INBOX"), server.count("Processed")) == (1, 0, 1, 0)


def test_starttls_is_used_on_imap_urls(server: Dovecot) -> None:
    server.append(build(message_id="<starttls-1@example.org>"))
    result = poll_once(ImapSettings.from_url(server.url(starttls=True), ca_file=server.ca_file), lambda raw: "stored")
    assert result.moved == 1


def test_an_untrusted_certificate_is_refused(server: Dovecot) -> None:
    with pytest.raises(ImapError, match="TLS"):
        connect(ImapSettings.from_url(server.url()))  # no CA file: the self-signed chain is not trusted


def test_a_wrong_password_is_a_clear_error_without_the_password(server: Dovecot) -> None:
    url = server.url().replace("imap-test-password", "wrong-secret")
    with pytest.raises(ImapError) as caught:
        connect(ImapSettings.from_url(url, ca_file=server.ca_file))
    assert "wrong-secret" not in str(caught.value)


def test_mail_poll_command(server: Dovecot, app: Flask, runner: FlaskCliRunner, session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    server.append(build(message_id="<cli-poll-1@example.org>"))
    monkeypatch.setitem(app.config, "IMAP_URL", server.url())
    monkeypatch.setitem(app.config, "IMAP_CA_FILE", server.ca_file)
    result = runner.invoke(args=["mail", "poll"])
    assert result.exit_code == 0, result.output
    assert "fetched 1: stored 1" in result.output and "moved 1" in result.output
    assert stored(session, "cli-poll-1@example.org") == 1


def test_scheduled_actor_polls_only_when_imap_url_is_set(server: Dovecot, app: Flask, session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.inbound import poll_imap
    from workers.scheduler import JOBS

    assert any(job.actor == "poll_imap" for job in JOBS)
    server.append(build(message_id="<actor-1@example.org>"))
    monkeypatch.setitem(app.config, "IMAP_URL", None)
    poll_imap()  # unset: nothing happens
    assert server.count("INBOX") == 1
    monkeypatch.setitem(app.config, "IMAP_URL", server.url())
    monkeypatch.setitem(app.config, "IMAP_CA_FILE", server.ca_file)
    poll_imap()
    assert (server.count("INBOX"), stored(session, "actor-1@example.org")) == (0, 1)


def test_the_actor_and_the_command_share_the_poll_service_and_no_worker_imports_the_mail_commands() -> None:
    import grimp

    graph = grimp.build_graph("workers", "app")
    assert "app.mail.poll" in graph.find_modules_directly_imported_by("workers.inbound")
    assert "app.mail.poll" in graph.find_modules_directly_imported_by("app.mail.commands")
    assert sorted(m for m in graph.find_modules_that_directly_import("app.mail.commands") if m.startswith("workers")) == []
