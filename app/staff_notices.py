"""Tell a staff member by email that an admin changed how they sign in (issue 12 item 6; ASVS 6.3.7 / 6.4.x).

An edge helper (admin views and `users` commands call it after their service): app.auth,
a core package, does not import the outbox. The message says what changed and when, never
a password or code, and asks them to tell an admin at once if they did not expect it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from app.auth.models import User
from app.mail.outbox import enqueue_email, msgid_domain_for
from app.principal import Principal

WHAT = {
    "mfa_reset": "Your two-factor authentication was reset by an admin. You will set it up again at your next login, with a new enrolment code.",
    "password_reset": "Your password was reset by an admin. The new one works once: you choose your own at your next login.",
    "enrolment_code": "An admin issued an enrolment code for setting up two-factor authentication on your account.",
}


def notify(session: Session, user: User, what: str, *, config: Mapping[str, Any], by: Principal, now: dt.datetime) -> None:
    """Queue the notice `what` (a key of WHAT) to the user's own address, in the caller's transaction."""
    body = (
        f"Hello,\n\n{WHAT[what]}\n\nWhen: {now:%Y-%m-%d %H:%M} UTC.\n\n"
        "If you did not expect this, tell an admin at once: someone may be trying to take over your account.\n\n"
        "DSR Desk\n"
    )
    enqueue_email(
        session,
        to=user.email,
        subject="DSR Desk: a change to how you sign in",
        body_text=body,
        kind="staff_notice",
        msgid_domain=msgid_domain_for(config),
        by=by,
        now=now,
    )
