"""The outbox end to end: committed rows, real worker threads and a real SMTP server on loopback.

Each test has its own database (committed_app) because workers commit in
their own sessions. The broker is the suite's: in-process by default, Redis
when TEST_BROKER_URL is set.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from flask import Flask
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.db import utcnow
from app.extensions import db
from app.jobs.broker import is_in_process
from app.mail import delivery, outbox
from app.mail.models import OutboxEmail
from app.mail.outbox_settings import OutboundSettings
from config.settings import REPO_ROOT
from tests.factories import TEST_PRINCIPAL
from tests.workers.smtp_support import SmtpServer, wait_for
from tests.workers.support import STALE_SECONDS, process_env, row_of, worker
from workers import mail as mail_actors
from workers.scheduler import JOBS


def queue_email(app: Flask, **kw: Any) -> OutboxEmail:
    """Enqueue and commit, as a view or service edge would; the commit rings the doorbell."""
    fields: dict[str, Any] = {
        "to": "dpo@controller.example",
        "subject": "Data subject request forwarded [T-2026-000042]",
        "body_text": "Please see the request below.",
        "kind": "dsr_forward",
        "msgid_domain": "desk.example",
        "by": TEST_PRINCIPAL,
        "now": utcnow(),
    }
    fields.update(kw)
    with app.app_context(), db.session_scope() as session:
        return outbox.enqueue_email(session, **fields)


def settings_of(app: Flask) -> OutboundSettings:
    return OutboundSettings.from_config(app.config)


def sent(app: Flask, outbox_id: int) -> OutboxEmail | None:
    row = row_of(app, outbox_id)
    return row if row.state == "sent" else None


def test_a_reply_arrives_with_its_message_id_and_threading_headers(mail_app: Flask, smtp: SmtpServer) -> None:
    # Given a staff reply in a thread, queued and committed
    with worker():
        row = queue_email(
            mail_app,
            kind="reply",
            in_reply_to="<CAE1x=abc@mail.gmail.com>",
            references=["<root-1@mail.example>", "<CAE1x=abc@mail.gmail.com>"],
            reply_to="support+t42@desk.example",
        )
        # When the worker picks it up
        done = wait_for(lambda: sent(mail_app, row.id))
    # Then exactly one message arrived, threaded under the subject's message
    assert len(smtp.received) == 1
    got = smtp.received[0]
    # the envelope sender is VERP: it names the row, so a bounce finds it (issue 11 item 4)
    token = row.message_id.strip("<>").split(".", 1)[0]
    assert got.rcpt_tos == ["dpo@controller.example"] and got.mail_from == f"privacy+bounce-{token}@desk.example"
    msg = got.message
    assert msg["Message-ID"] == row.message_id
    assert msg["In-Reply-To"] == "<CAE1x=abc@mail.gmail.com>"
    assert msg["References"].split() == ["<root-1@mail.example>", "<CAE1x=abc@mail.gmail.com>"]
    assert msg["Reply-To"] == "support+t42@desk.example"
    assert msg["Auto-Submitted"] is None  # written by a person
    assert msg["Date"] is not None
    assert msg.get_content().strip() == "Please see the request below."
    assert done.smtp_response == "250 2.0.0 Ok: queued as Q1"
    assert done.sent_at is not None and done.attempts == 1 and done.delivery_note == "sent on first attempt"


def test_an_automatic_notice_is_marked_auto_submitted(mail_app: Flask, smtp: SmtpServer) -> None:
    with worker():
        row = queue_email(mail_app, kind="dsr_forward")
        wait_for(lambda: sent(mail_app, row.id))
    assert smtp.received[0].message["Auto-Submitted"] == "auto-generated"


def test_smtp_down_for_a_while_is_delivered_after_it_returns_exactly_once(mail_app: Flask, smtp: SmtpServer) -> None:
    # Given the SMTP server is down
    smtp.stop()
    with worker():
        row = queue_email(mail_app)
        # When the worker tries: a temporary failure, retried with backoff
        failed_once = wait_for(lambda: (r := row_of(mail_app, row.id)).attempts >= 2 and r.state == "queued" and r)
        assert "unreachable" in (failed_once.last_error or "")
        assert failed_once.due_at > failed_once.updated_at  # the next attempt is scheduled, not immediate
        # And the server comes back
        smtp.start()
        done = wait_for(lambda: sent(mail_app, row.id))
        time.sleep(1.0)  # any duplicate doorbell would have been processed by now
    # Then it was delivered once, and the row says it took several attempts
    assert len(smtp.received) == 1
    assert smtp.received[0].message["Message-ID"] == row.message_id
    assert done.attempts >= 3
    assert done.delivery_note == f"sent on attempt {done.attempts} after temporary failures"
    assert done.last_error is None  # a sent row shows no error (the audit's outbox.retry events keep the history)


def test_a_4xx_refusal_is_retried_and_a_5xx_refusal_fails_for_good(mail_app: Flask, smtp: SmtpServer) -> None:
    smtp.handler.rcpt_reply = "550 5.1.1 <dpo@controller.example>: Recipient address rejected"
    with worker():
        row = queue_email(mail_app)
        failed = wait_for(lambda: (r := row_of(mail_app, row.id)).state == "failed" and r)
    assert failed.attempts == 1 and failed.delivery_note == "refused permanently"
    assert failed.last_error is not None and "550" in failed.last_error
    assert "dpo@controller.example" not in failed.last_error  # replies that echo the address are scrubbed
    assert smtp.received == []
    with mail_app.app_context(), db.session_scope() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.target_type == "outbox_email", AuditEvent.target_id == str(row.id))).all()
    assert [e.action for e in events] == ["outbox.failed"]
    assert events[0].details == {"attempt": 1}


def test_a_worker_that_died_after_claiming_is_resent_after_its_claim_goes_stale(mail_app: Flask, smtp: SmtpServer) -> None:
    # Given a worker claimed the row and died before sending (no worker thread runs yet)
    row = queue_email(mail_app)
    settings = settings_of(mail_app)
    claimed_at = utcnow()
    with mail_app.app_context(), db.session_scope() as session:
        assert delivery.claim(session, row.id, now=claimed_at, timing=settings.timing) is not None
    assert row_of(mail_app, row.id).state == "sending"
    # A doorbell while the claim is live leaves the row alone, and the sweeper does not pick it
    with mail_app.app_context():
        assert delivery.deliver(db.session_scope, row.id, settings=settings, clock=lambda: claimed_at + dt.timedelta(seconds=1)) == "skipped"
        with db.session_scope() as session:
            assert delivery.due_for_delivery(session, now=claimed_at + dt.timedelta(seconds=1), timing=settings.timing) == []
    assert smtp.received == []
    # When the claim is older than the stale limit and the sweeper runs
    time.sleep(STALE_SECONDS)
    with worker():
        mail_actors.sweep_outbox.send()
        done = wait_for(lambda: sent(mail_app, row.id))
    # Then it is delivered once, and the row says it was a re-send of an unknown outcome
    assert len(smtp.received) == 1
    assert done.delivery_note == "resent after stale claim" and done.attempts == 2


def test_concurrent_workers_send_a_row_only_once(mail_app: Flask, smtp: SmtpServer) -> None:
    mail_app.config["OUTBOX_STALE_SECONDS"] = 600  # a slow machine must not turn a live claim stale mid-test
    row = queue_email(mail_app)
    outcomes: list[str] = []
    start = threading.Barrier(6)

    def attempt() -> None:
        with mail_app.app_context():
            start.wait()
            outcomes.append(delivery.deliver(db.session_scope, row.id, settings=settings_of(mail_app), clock=utcnow))

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["sent"] + ["skipped"] * 5
    assert len(smtp.received) == 1


def test_with_the_broker_down_the_commit_succeeds_and_the_sweeper_delivers_later(mail_app: Flask, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = dramatiq.get_broker()

    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("broker unreachable")

    # Given the broker refuses every message
    with monkeypatch.context() as patch:
        patch.setattr(broker, "enqueue", broker_down)
        row = queue_email(mail_app)  # the doorbell fails; the commit does not
    assert row_of(mail_app, row.id).state == "queued"
    # When the broker is back, only the sweeper knows about the row
    assert any(job.actor == "sweep_outbox" for job in JOBS)
    with worker():
        time.sleep(0.3)
        assert smtp.received == []  # nothing was sent while the broker was down
        mail_actors.sweep_outbox.send()
        wait_for(lambda: sent(mail_app, row.id))
    assert len(smtp.received) == 1


def test_the_file_outbox_writes_one_parseable_eml_per_message(committed_app: Flask, tmp_path: Path) -> None:
    folder = tmp_path / "outbox"
    committed_app.config.update(SMTP_URL=None, OUTBOX_PATH=str(folder), OUTBOX_STALE_SECONDS=STALE_SECONDS)
    dramatiq.get_broker().flush_all()
    with worker():
        row = queue_email(committed_app, in_reply_to="<parent@mail.example>", body_html="<p>Please see the request below.</p>")
        done = wait_for(lambda: sent(committed_app, row.id))
    files = sorted(p.name for p in folder.iterdir())
    assert files == [f"{row.message_id.strip('<>')}.eml"]  # no temporary files left behind
    path = folder / files[0]
    assert path.stat().st_mode & 0o777 == 0o600
    import email
    import email.policy

    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert parsed["Message-ID"] == row.message_id and parsed["In-Reply-To"] == "<parent@mail.example>"
    assert parsed["To"] == "dpo@controller.example"
    assert parsed.get_body(("plain",)).get_content().strip() == "Please see the request below."  # type: ignore[union-attr]
    assert done.smtp_response == f"written {files[0]}"


def test_the_file_outbox_does_not_write_twice_after_a_crash_between_write_and_record(committed_app: Flask, tmp_path: Path) -> None:
    # Given a worker wrote the file and died before marking the row sent
    folder = tmp_path / "outbox"
    committed_app.config.update(SMTP_URL=None, OUTBOX_PATH=str(folder), OUTBOX_STALE_SECONDS=0.5)
    settings = settings_of(committed_app)
    row = queue_email(committed_app)
    with committed_app.app_context(), db.session_scope() as session:
        assert delivery.claim(session, row.id, now=utcnow(), timing=settings.timing) is not None
        claimed = session.get(OutboxEmail, row.id)
        assert claimed is not None
        message = outbox.build_message(claimed, sender=settings.sender)
    settings.transport.send(message, sender=settings.sender, recipient=row.to_addr)
    first = (folder / f"{row.message_id.strip('<>')}.eml").stat().st_mtime_ns
    time.sleep(0.6)
    # When the sweeper hands the stale row to a worker
    with committed_app.app_context():
        assert delivery.deliver(db.session_scope, row.id, settings=settings, clock=utcnow) == "sent"
    # Then the file is not rewritten and the row says why
    assert (folder / f"{row.message_id.strip('<>')}.eml").stat().st_mtime_ns == first
    assert len(list(folder.iterdir())) == 1
    assert row_of(committed_app, row.id).delivery_note == "found already delivered after stale claim; not sent again"


_DELIVER_ONCE = """
import sys
from app import create_app
from app.db import utcnow
from app.extensions import db
from app.jobs.broker import is_in_process
from app.mail import delivery
from app.mail.outbox_settings import OutboundSettings
app = create_app()
with app.app_context():
    delivery.deliver(db.session_scope, int(sys.argv[1]), settings=OutboundSettings.from_config(app.config), clock=utcnow)
"""


def _kill_mid_send(app: Flask, smtp: SmtpServer, stall_at: str) -> OutboxEmail:
    """Run a sending process, SIGKILL it while the SMTP server holds it at `stall_at`, then let the sweeper finish."""
    smtp.handler.stall_at = stall_at
    row = queue_email(app)
    env = process_env(app, SMTP_URL=app.config["SMTP_URL"], PRIVACY_ADDRESS=app.config["PRIVACY_ADDRESS"])
    proc = subprocess.Popen([sys.executable, "-c", _DELIVER_ONCE, str(row.id)], cwd=REPO_ROOT, env=env, stderr=subprocess.PIPE)
    try:
        assert smtp.handler.stalled.wait(60), proc.stderr.read().decode() if proc.poll() is not None and proc.stderr else "never reached the server"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
        if proc.stderr:
            proc.stderr.close()
    assert row_of(app, row.id).state == "sending"  # the dead worker's claim is visible
    smtp.handler.release.set()
    time.sleep(STALE_SECONDS)
    with worker():
        mail_actors.sweep_outbox.send()
        return wait_for(lambda: sent(app, row.id))  # type: ignore[no-any-return]


def test_a_worker_process_killed_before_the_server_accepted_is_delivered_once(mail_app: Flask, smtp: SmtpServer) -> None:
    # The common case: killed before the end of DATA, the server never took the message.
    done = _kill_mid_send(mail_app, smtp, "rcpt")
    assert len(smtp.received) == 1
    assert smtp.received[0].message["Message-ID"] == done.message_id
    assert done.delivery_note == "resent after stale claim" and done.attempts == 2


def test_a_worker_process_killed_after_the_server_accepted_sends_a_copy_with_the_same_message_id(mail_app: Flask, smtp: SmtpServer) -> None:
    # The residual risk: the server took the message, the worker died before recording it.
    # The re-send is unavoidable (the outcome is unknown) but carries the same Message-ID,
    # so the receiver can collapse the two, and the row says a re-send happened.
    done = _kill_mid_send(mail_app, smtp, "data")
    assert [r.message["Message-ID"] for r in smtp.received] == [done.message_id, done.message_id]
    assert smtp.received[0].content == smtp.received[1].content  # byte-identical copies
    assert done.delivery_note == "resent after stale claim"


def test_the_sweep_command_enqueues_due_rows_or_sends_them_itself(committed_app: Flask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "outbox"
    committed_app.config.update(SMTP_URL=None, OUTBOX_PATH=str(folder))
    broker = dramatiq.get_broker()
    broker.flush_all()
    with monkeypatch.context() as patch:
        patch.setattr(broker, "enqueue", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("broker unreachable")))
        row = queue_email(committed_app)
    runner = committed_app.test_cli_runner()
    if is_in_process():
        # The embedded default: no worker runs in this process to take a doorbell, so the sweep sends from here and says so
        swept = runner.invoke(args=["mail", "sweep-outbox", "--json"])
        assert swept.exit_code == 0, swept.output
        report = json.loads(swept.output)
        assert (report["due"], report["sent"], report["sent_from_here"]) == (1, 1, "in-process broker: no worker in this process")
        assert row_of(committed_app, row.id).state == "sent"
        return
    # The broker is back: the sweep hands the row to the workers (none run here, so it stays queued)
    enqueued = runner.invoke(args=["mail", "sweep-outbox", "--json"])
    assert enqueued.exit_code == 0, enqueued.output
    assert json.loads(enqueued.output) == {"due": 1, "enqueued": 1, "backlog": {"queued": 1, "due": 1, "sending": 0, "failed": 0, "refused": 0}}
    broker.flush_all()
    # --send-now delivers from the command itself
    sent_now = runner.invoke(args=["mail", "sweep-outbox", "--send-now"])
    assert sent_now.exit_code == 0, sent_now.output
    assert "due=1 sent=1" in sent_now.output and "queued=0" in sent_now.output
    assert row_of(committed_app, row.id).state == "sent"
    assert [p.name for p in folder.iterdir()] == [f"{row.message_id.strip('<>')}.eml"]


def test_a_failed_email_can_be_requeued_by_an_operator_and_then_goes_out(mail_app: Flask, smtp: SmtpServer) -> None:
    smtp.handler.rcpt_reply = "550 5.7.1 relaying denied"
    with worker():
        row = queue_email(mail_app)
        wait_for(lambda: row_of(mail_app, row.id).state == "failed")
        runner = mail_app.test_cli_runner()
        refused = runner.invoke(args=["mail", "requeue-outbox", "999999"])
        assert refused.exit_code == 2 and "no outbox email 999999" in refused.output
        # The relay is fixed, the operator requeues the email
        smtp.handler.rcpt_reply = None
        result = runner.invoke(args=["mail", "requeue-outbox", str(row.id)])
        assert result.exit_code == 0, result.output
        done = wait_for(lambda: sent(mail_app, row.id))
        again = runner.invoke(args=["mail", "requeue-outbox", str(row.id)])
        assert again.exit_code == 2 and "is sent, not failed" in again.output
    assert len(smtp.received) == 1 and smtp.received[0].message["Message-ID"] == row.message_id
    assert done.attempts == 1
