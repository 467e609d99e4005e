"""The outbox as a service: what `enqueue_email` accepts and refuses, the message it builds, SMTP_URL parsing."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.db import utcnow
from app.mail import figures, outbox
from app.mail.models import OutboxEmail
from app.mail.outbox import InvalidOutboundEmail, enqueue_email
from app.mail.outbox_settings import OutboxTiming
from app.mail.transport import SmtpUrlError, parse_smtp_url
from tests.factories import TEST_PRINCIPAL


def _queue(session: Session, **kw: object) -> OutboxEmail:
    fields: dict[str, object] = {
        "to": "dpo@controller.example",
        "subject": "Data subject request forwarded [T-2026-000001]",
        "body_text": "A data subject wrote to us.",
        "by": TEST_PRINCIPAL,
        "now": utcnow(),
    }
    fields.update(kw)
    return enqueue_email(session, **fields)  # type: ignore[arg-type]


def _count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(OutboxEmail)) or 0)


def test_a_queued_email_is_a_row_with_a_unique_message_id_due_now(session: Session) -> None:
    now = utcnow()
    first = _queue(session, now=now, kind="dsr_forward", related_type="dsr", related_id=7)
    second = _queue(session, now=now)
    assert first.state == "queued" and first.attempts == 0 and first.due_at == now
    assert first.message_id.startswith("<") and first.message_id.endswith("@desk.localhost>")
    assert first.message_id != second.message_id
    assert (first.related_type, first.related_id) == ("dsr", 7)
    assert _count(session) == 2


def test_the_recipient_is_validated_and_normalised(session: Session) -> None:
    row = _queue(session, to="  DPO@Controller.Example ")
    assert row.to_addr == "dpo@controller.example"
    with pytest.raises(InvalidOutboundEmail, match="to is not a valid email address"):
        _queue(session, to="not an address")
    with pytest.raises(InvalidOutboundEmail, match="reply_to"):
        _queue(session, reply_to="support@")


@pytest.mark.parametrize(
    "field",
    [
        {"subject": "Hello\r\nBcc: victim@example.org"},
        {"subject": "Hello\nX-Injected: 1"},
        {"subject": "Hello\u2028there"},
        {"to": "dpo@controller.example\r\nBcc: victim@example.org"},
        {"reply_to": "support@desk.example\nBcc: victim@example.org"},
        {"in_reply_to": "<a@b.example>\r\nBcc: victim@example.org"},
        {"references": ["<a@b.example>", "<c@d.example>\nBcc: victim@example.org"]},
        {"headers": {"X-Desk-Ticket": "T-1\r\nBcc: victim@example.org"}},
    ],
)
def test_a_line_break_in_any_header_value_is_refused_and_nothing_is_queued(session: Session, field: dict[str, object]) -> None:
    with pytest.raises(InvalidOutboundEmail) as caught:
        _queue(session, **field)
    assert "victim" not in str(caught.value)  # the error names the field, never echoes the value
    assert _count(session) == 0


def test_core_headers_cannot_be_overridden_and_header_names_are_checked(session: Session) -> None:
    with pytest.raises(InvalidOutboundEmail, match="set by the outbox"):
        _queue(session, headers={"Bcc": "victim@example.org"})
    with pytest.raises(InvalidOutboundEmail, match="header name"):
        _queue(session, headers={"X Bad: name": "1"})
    assert _count(session) == 0


def test_automatic_mail_is_marked_auto_submitted_and_a_staff_reply_is_not(session: Session) -> None:
    notice = _queue(session, kind="dsr_forward")
    reply = _queue(session, kind="reply")
    ack = _queue(session, kind="acknowledgement")
    assert notice.headers["Auto-Submitted"] == "auto-generated"
    assert notice.headers["X-Auto-Response-Suppress"] == "All"
    assert "Auto-Submitted" not in reply.headers
    assert ack.headers["Auto-Submitted"] == "auto-replied"


def test_the_built_message_threads_under_the_parent_and_keeps_message_id_and_date(session: Session) -> None:
    created = dt.datetime(2026, 11, 21, 10, 30, tzinfo=dt.UTC)
    row = _queue(
        session,
        kind="reply",
        now=created,
        in_reply_to="parent@mail.example",
        references=["<root@mail.example>"],
        reply_to="support+tok123@desk.example",
        body_html="<p>Hello</p>",
    )
    msg = outbox.build_message(row, sender="privacy@desk.example")
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert parsed["Message-ID"] == row.message_id
    assert parsed["In-Reply-To"] == "<parent@mail.example>"
    assert parsed["References"].split() == ["<root@mail.example>", "<parent@mail.example>"]
    assert parsed["Reply-To"] == "support+tok123@desk.example"
    assert parsed["Date"] == "Sat, 21 Nov 2026 10:30:00 +0000"
    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed.get_body(("plain",)).get_content().strip() == "A data subject wrote to us."  # type: ignore[union-attr]
    # The same row builds the same bytes: a re-send is the same message.
    assert outbox.build_message(row, sender="privacy@desk.example").as_bytes() == msg.as_bytes()


def test_a_long_thread_keeps_its_root_and_the_latest_references(session: Session) -> None:
    refs = [f"<m{i}@mail.example>" for i in range(40)]
    row = _queue(session, references=refs, in_reply_to="<m39@mail.example>")
    kept = (row.references or "").split()
    assert len(kept) == outbox.MAX_REFERENCES
    assert kept[0] == "<m0@mail.example>" and kept[-1] == "<m39@mail.example>"


def test_retry_delays_grow_exponentially_up_to_the_cap() -> None:
    timing = OutboxTiming(retry_base=dt.timedelta(seconds=60), retry_max=dt.timedelta(minutes=10))
    assert [timing.retry_delay(n).total_seconds() for n in (1, 2, 3, 4, 5)] == [60, 120, 240, 480, 600]


def test_backlog_counts_rows_by_state(session: Session) -> None:
    now = utcnow()
    _queue(session, now=now)
    later = _queue(session, now=now)
    later.due_at = now + dt.timedelta(hours=1)
    session.flush()
    counts = figures.backlog(session, now=now)
    assert counts["queued"] >= 2 and counts["due"] == counts["queued"] - 1


def test_smtp_urls_select_starttls_or_implicit_tls() -> None:
    plain = parse_smtp_url("smtp://relay.example")
    assert (plain.host, plain.port, plain.implicit_tls, plain.starttls) == ("relay.example", 25, False, "auto")
    required = parse_smtp_url("smtp://relay.example:587?starttls=required&timeout=5")
    assert (required.port, required.starttls, required.timeout) == (587, "required", 5.0)
    tls = parse_smtp_url("smtps://user%40desk:p%40ss@relay.example")
    assert (tls.port, tls.implicit_tls, tls.username, tls.password) == (465, True, "user@desk", "p@ss")


def test_smtp_credentials_never_appear_in_reprs_or_errors() -> None:
    settings = parse_smtp_url("smtps://mailer:sup3rsecret@relay.example")
    assert "sup3rsecret" not in repr(settings)
    for bad in ("http://mailer:sup3rsecret@relay.example", "smtp://mailer:sup3rsecret@relay.example?tls=1", "smtp://mailer:sup3rsecret@relay.example:notaport"):
        with pytest.raises(SmtpUrlError) as caught:
            parse_smtp_url(bad)
        assert "sup3rsecret" not in str(caught.value)


def test_the_recipient_and_bodies_are_stored_encrypted(session: Session) -> None:
    row = _queue(session, to="jane.doe@example.org", body_text="Jane Doe asks for her data", body_html="<p>Jane Doe</p>", controller_id=None)
    stored = session.execute(text("SELECT to_addr_ct, body_text_ct, body_html_ct, subject FROM outbox_emails WHERE id = :id"), {"id": row.id}).one()
    for blob in stored[:3]:
        assert b"jane" not in bytes(blob).lower()
    session.expire(row)
    assert row.to_addr == "jane.doe@example.org" and row.body_text == "Jane Doe asks for her data"


def test_healthz_reports_the_outbox_backlog_as_numbers_only(client: FlaskClient, session: Session) -> None:
    _queue(session, to="jane.doe@example.org")
    session.flush()
    report = client.get("/healthz").get_json()
    assert report["outbox"]["queued"] >= 1 and report["outbox"]["due"] >= 1
    assert set(report["outbox"]) == {"queued", "due", "sending", "failed", "refused"}
    assert all(isinstance(n, int) for n in report["outbox"].values())
    assert "jane" not in json.dumps(report)
