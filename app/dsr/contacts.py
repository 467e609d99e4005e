"""Email to a controller about one of its data-subject requests: one outbox row per DSR contact (W§12.1, P§11.3).

The forward, a flagged instruction (W§5.3) and the completion notice all go this way, so each is an outbox row
related to the request (replies thread back to it, the outbound policies are asked, delivery is tracked).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from app.controllers.models import Controller
from app.dsr.models import Dsr
from app.dsr.settings import DsrSettings
from app.mail.models import OutboxEmail
from app.mail.outbox import enqueue_email
from app.principal import Principal


def email_dsr_contacts(
    session: Session,
    dsr: Dsr,
    controller: Controller,
    *,
    subject: str,
    body: str,
    kind: str,
    settings: DsrSettings,
    by: Principal,
    now: dt.datetime,
) -> list[OutboxEmail]:
    """Queue `body` to each of `controller`'s DSR contacts as an outbox row of `kind` about `dsr`; the rows, in contact order.

    Raises what `enqueue_email` raises (an invalid address, an outbound policy's refusal).
    """
    return [
        enqueue_email(
            session,
            to=address,
            subject=subject,
            body_text=body,
            reply_to=settings.reply_to,
            controller_id=controller.id,
            related_type="dsr",
            related_id=dsr.id,
            kind=kind,
            msgid_domain=settings.msgid_domain,
            by=by,
            now=now,
        )
        for address in controller.contact_emails("dsr")
    ]
