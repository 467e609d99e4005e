"""Plain factory functions: `make_controller(session, **kw)`, `make_user(session, role, **kw)`, `make_instruction(session, dsr, ...)`."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from app.auth import mfa
from app.auth.models import User
from app.auth.service import AuthPolicy, create_user
from app.controllers.models import Controller
from app.controllers.service import ControllerInput, create_controller
from app.db import utcnow
from app.dsr import instructions as dsr_instructions
from app.dsr.models import Dsr, Instruction
from app.principal import Principal

_seq = itertools.count(1)
TEST_PRINCIPAL = Principal.system("tests")


def make_controller(session: Session, **kw: Any) -> Controller:
    """A valid active controller; keyword arguments override ControllerInput fields."""
    n = next(_seq)
    fields: dict[str, Any] = {
        "name": f"Controller {n}",
        "dsr_contacts": [f"dpo{n}@controller{n}.example"],
        "domains": [f"controller{n}.example"],
    }
    fields.update(kw)
    return create_controller(session, ControllerInput(**fields), by=TEST_PRINCIPAL, now=utcnow())


# A password that passes the policy; tests log in with it.
TEST_PASSWORD = "plum-harbour-lantern-47"
# bcrypt's minimum cost keeps the suite fast; production insists on 12 or more.
TEST_POLICY = AuthPolicy(bcrypt_cost=4)


def make_user(
    session: Session, role: str = "admin", *, controllers: Sequence[int | Controller] = (), enrolled: bool = True, password: str = TEST_PASSWORD, **kw: Any
) -> User:
    """A staff account with `TEST_PASSWORD`; with `enrolled` its TOTP is set up (secret in `user.totp_secret`)."""
    n = next(_seq)
    ids = [c.id if isinstance(c, Controller) else c for c in controllers]
    email = kw.pop("email", f"staff{n}@desk.example")
    user = create_user(session, email, role=role, password=password, controller_ids=ids, by=TEST_PRINCIPAL, now=utcnow(), policy=TEST_POLICY)
    user.password_must_change = False  # a test user's password is its own unless a test says otherwise
    if enrolled:
        user.totp_secret = mfa.new_secret()
        user.mfa_enrolled_at = utcnow()
    else:
        # The single-use code an admin would hand over (issue 12 item 6); kept on the object for the test only.
        from app.auth.onboarding import issue_enrolment_code

        user.test_enrolment_code = issue_enrolment_code(session, user.id, by=TEST_PRINCIPAL, now=utcnow())  # type: ignore[attr-defined]
    for key, value in kw.items():
        setattr(user, key, value)
    session.flush()
    return user


def make_instruction(
    session: Session, dsr: Dsr, *, controller_id: int, sender_email: str, reply_text: str, raw: bytes = b"x", now: dt.datetime | None = None
) -> Instruction:
    """A controller's email reply to a forward, kept as the mail path keeps it: pending from a registered contact, else unverified."""
    return dsr_instructions.receive(
        session,
        dsr,
        controller_id=controller_id,
        sender_email=sender_email,
        reply_text=reply_text,
        raw=raw,
        raw_sha256=hashlib.sha256(raw).hexdigest(),
        message_pk=None,
        by=TEST_PRINCIPAL,
        now=now or utcnow(),
    )


def relay_accepts(session: Session, dsr_id: int, *, now: dt.datetime) -> None:
    """The relay accepted every queued forward of a request (no SMTP here): its outbox rows are marked sent and reported, as the outbox does."""
    from app.dsr.demo import accept_forwards

    accept_forwards(session, dsr_id, at=now, answer="250 2.0.0 Ok")


def make_standing(session: Session, controller: Controller, *, now: dt.datetime | None = None) -> Any:
    """The controller's standing acknowledgement instruction, recorded from a verified reply of the controller (issue 12 item 2).

    The reply belongs to a request of its own with no subject address (so it sends no acknowledgement itself).
    """
    from app.dsr.requests import DsrInput, create_dsr

    when = now or utcnow()
    dsr = create_dsr(
        session, DsrInput(types=["access"], subject_name="Standing"), source="staff", received_at=when, ticket=None, controller_ids=[controller.id],
        by=TEST_PRINCIPAL, now=when,
    )  # fmt: skip
    contact = controller.contact_emails("dsr")[0]
    reply = make_instruction(session, dsr, controller_id=controller.id, sender_email=contact, reply_text="You may acknowledge receipt of requests.", now=when)
    return dsr_instructions.record_standing(session, controller.id, source_instruction_id=reply.id, by=TEST_PRINCIPAL, now=when)
