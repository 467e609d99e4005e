"""Bounces belong to what bounced: a delivery status notification is matched to the outbox row it reports on.

The row is found by the original Message-ID the DSN returns (`app.mail.dsn`) or
by the VERP return address the desk sent it from (`<local>+bounce-<token>@`),
marked `bounced` with the status code and diagnostic (a failure; a delay only
records them), audit-logged, and its domain is told through the delivery
hooks (`app.mail.outcomes`, state "bounced": the DSR escalates a bounced
forward to the privacy officers at once, as for a relay's refusal). A
bounce never opens a ticket: when the row belongs to one, the notification is
kept on that ticket as an automatic message (its status parts are not files);
one that names nothing the desk sent is held in the quarantine, silently.
"""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.audit.service import record
from app.crypto import message_ids
from app.mail import delivery
from app.mail.dsn import AUTO_REPLIED, DeliveryReport, verp_key, verp_tokens
from app.mail.models import OutboxEmail
from app.mail.parse import ParsedMail
from app.principal import Principal

BOUNCEABLE_STATES = ("sent", "sending", "queued", "failed", "bounced")
# The audit log takes short codes only: a DSN's Action field is the sender's text (empty, or with any characters).
_ACTION_CODE = re.compile(r"[^a-z0-9_.:/-]")


def find_bounced(session: Session, mail: ParsedMail, report: DeliveryReport) -> OutboxEmail | None:
    """The outbox row a DSN reports on: by a returned Message-ID, else by a VERP token among its recipients."""
    ids = message_ids.digests(session, report.original_message_ids[:20])
    tokens = message_ids.digests(session, [verp_key(t) for t in verp_tokens(mail.recipients)[:5]])
    if not ids and not tokens:
        return None
    conditions: list[ColumnElement[bool]] = []
    if ids:
        conditions.append(OutboxEmail.message_id_bidx.in_(ids))
    if tokens:
        conditions.append(OutboxEmail.verp_bidx.in_(tokens))
    return session.scalars(select(OutboxEmail).where(or_(*conditions)).order_by(OutboxEmail.id.desc()).limit(1)).first()


def mark_bounced(session: Session, row: OutboxEmail, report: DeliveryReport, *, by: Principal, now: dt.datetime) -> bool:
    """Record the DSN on its row; a failure marks it `bounced` and tells its domain. True when the row became bounced.

    An automatic reply to the row's VERP address (`AUTO_REPLIED`) is only audit-logged: it says nothing of delivery.
    """
    if report.action == AUTO_REPLIED:
        record(session, by=by, action="outbox.auto_reply", target_type="outbox_email", target_id=row.id, details={"kind": row.kind}, now=now)
        return False
    row.bounce_status = report.status[:20] or None
    row.bounce_diagnostic = report.diagnostic[:500] or None
    row.updated_at = now
    failed = report.failed and row.state in BOUNCEABLE_STATES and row.state != "bounced"
    if failed:
        row.state = "bounced"
        row.bounced_at = now
    session.flush()
    record(
        session,
        by=by,
        action="outbox.bounced" if failed else "outbox.delivery_report",
        target_type="outbox_email",
        target_id=row.id,
        details={"status": row.bounce_status, "action": _ACTION_CODE.sub("", report.action.lower())[:20] or "unknown", "kind": row.kind},
        now=now,
    )
    if failed:
        # The owning domain hears of it as of any other delivery outcome (the DSR escalates a bounced forward at once).
        answer = " ".join(x for x in (row.bounce_status, row.bounce_diagnostic) if x) or "bounced"
        delivery.notify(session, row.id, "bounced", answer, now=now, permanent=True)
    return failed
