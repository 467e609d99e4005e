"""The outbound policy of restrictions and objections (Art. 18 / 21): no reply leaves on a ticket under an active one.

Asked when an email is queued and again when a worker claims it (app.mail.policies),
so a reply queued before the restriction was recorded is refused at claim time
and never sent. Only replies on tickets are concerned (kind "reply", related to a
ticket); the desk's own notices to controllers are not.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from app.mail.policies import OutboundMessage, OutboundRefused, Refusal
from app.subject_data.restrict import restricted_ticket_ids

POLICY_NAME = "subject_data.restriction"
REPLY_KINDS = ("reply",)


class ReplyRestricted(OutboundRefused):
    """The ticket is under an active restriction or objection: no reply may leave."""


def restriction_policy(session: Session, message: OutboundMessage, *, now: dt.datetime) -> Refusal | None:
    """Refuse a reply on a ticket under an active restriction or objection."""
    if message.related_type != "ticket" or message.related_id is None or message.kind not in REPLY_KINDS:
        return None
    if not restricted_ticket_ids(session, [message.related_id]):
        return None
    return Refusal(
        reason="restricted",
        error=ReplyRestricted(f"ticket {message.related_id} is under a restriction or objection: no reply may be sent"),
        targets=(("ticket", message.related_id),),
        audit_action="outbox.restriction_refused",
        details={"ticket_id": message.related_id, "outbox_id": message.outbox_id},
    )
