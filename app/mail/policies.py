"""Outbound policies: the registry the outbox asks whether an email may leave.

Mail knows no domain; a domain that must stop some emails (the DSR instruction
gate today, a breach-confidentiality rule later) registers a policy at app
creation (`app.dsr.setup.register`, called by `create_app`). The outbox asks
every registered policy, in registration order:

- when a row is enqueued (`app.mail.outbox.enqueue_email`): a refusal raises the
  first refusal's error (an `OutboundRefused`, whose message a user may read) and
  nothing is queued. The refusal's audit events are written after the caller's
  transaction ends, in a transaction of their own, because the caller usually
  rolls back on the error and would take the evidence with it;
- again when a row is claimed for sending (`app.mail.delivery.deliver`: the first
  try, a retry after backoff, a requeue by an operator, a resend after a stale
  claim): a row that is no longer allowed is marked `refused`, never sent, and
  audit-logged in the same transaction as that state change.

A policy is `policy(session, message, *, now) -> Refusal | None`; it reads, never
writes, and never logs the recipient or the body (personal data).

Design, as for the intake registry (`app.mail.intake`): one registry per
process, `POLICIES`, not one per app, because the outbox runs in services that
take a session and no app, and a service never reads `current_app` (STYLE.md).
Registration is by name and idempotent (the same name again replaces the
policy in its place), so the many apps a test run, a worker or a CLI process
creates leave one entry per policy. A test adds a policy for one test with
`POLICIES.registered(name, policy)`, which restores the registry afterwards.
An empty registry fails closed: the outbox raises `PoliciesNotInstalled`
rather than send anything unchecked from a process that never created the app.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from app.audit.service import record
from app.exceptions import Refused
from app.principal import Principal

log = logging.getLogger(__name__)

_ENQUEUE_REFUSALS = "outbound_policy_refusals"


class OutboundRefused(Refused):
    """An outbound policy refused the email; the message says why (ids only, no personal data)."""


class PoliciesNotInstalled(RuntimeError):
    """No outbound policy is registered in this process: it never created the app, so nothing may be sent from it."""


@dataclass(frozen=True)
class OutboundMessage:
    """What a policy sees of one email. `to` and `body_text` are personal data: read them, never log them."""

    to: str
    kind: str
    body_text: str
    related_type: str | None = None
    related_id: int | None = None
    controller_id: int | None = None
    outbox_id: int | None = None  # None at enqueue time (the row is not written yet)


@dataclass(frozen=True)
class Refusal:
    """A policy's "no": a reason code, the error raised at enqueue time, and what to audit.

    `targets` are the domain objects the refusal concerns, as (type, id); each gets
    one audit event of `audit_action` with `details` (ids, counts, codes, booleans only).
    `policy` is filled in by the registry with the name the policy was registered under.
    """

    reason: str
    error: OutboundRefused
    targets: tuple[tuple[str, int], ...] = ()
    audit_action: str = "outbox.policy_refused"
    details: Mapping[str, Any] = field(default_factory=dict)
    policy: str = ""


class OutboundPolicy(Protocol):
    """`policy(session, message, *, now)`: None to allow the email, a Refusal to stop it."""

    def __call__(self, session: Session, message: OutboundMessage, *, now: dt.datetime) -> Refusal | None: ...


class PolicyRegistry:
    """The outbound policies the domains registered; see the module docstring."""

    def __init__(self) -> None:
        self._policies: dict[str, OutboundPolicy] = {}

    def add(self, name: str, policy: OutboundPolicy) -> None:
        """Register `policy` under `name` (e.g. "dsr.instruction_gate"), asked after those before it; the same name again replaces it in its place."""
        self._policies[name] = policy

    def remove(self, name: str) -> None:
        """Forget the policy registered under `name` (none: no-op)."""
        self._policies.pop(name, None)

    @property
    def names(self) -> list[str]:
        """The registered policies' names, in the order they are asked."""
        return list(self._policies)

    @contextmanager
    def registered(self, name: str, policy: OutboundPolicy) -> Iterator[None]:
        """Register a policy for the duration of a `with` block (tests), then restore what was there."""
        saved = dict(self._policies)
        self.add(name, policy)
        try:
            yield
        finally:
            self._policies = saved

    def refusals(self, session: Session, message: OutboundMessage, *, now: dt.datetime) -> list[Refusal]:
        """Ask every policy about `message`; the refusals in registration order (empty: it may leave).

        Raises PoliciesNotInstalled when nothing is registered (fail closed).
        """
        if not self._policies:
            raise PoliciesNotInstalled("no outbound policy is registered: create the app (create_app registers them) before queueing or sending mail")
        found: list[Refusal] = []
        for name, policy in list(self._policies.items()):
            refusal = policy(session, message, now=now)
            if refusal is not None:
                found.append(dataclasses.replace(refusal, policy=name))
        return found

    def check_enqueue(self, session: Session, message: OutboundMessage, *, by: Principal, now: dt.datetime) -> None:
        """Raise the first refusal's error if any policy refuses `message`; every refusal is audited after the transaction ends."""
        found = self.refusals(session, message, now=now)
        if not found:
            return
        session.info.setdefault(_ENQUEUE_REFUSALS, []).extend((by, now, r) for r in found)
        for refusal in found:
            log.warning("outbound policy %s refused an email of kind %s (%s)", refusal.policy, message.kind, refusal.reason)
        raise found[0].error


POLICIES = PolicyRegistry()


def audit_refusal(session: Session, refusal: Refusal, *, by: Principal, now: dt.datetime, extra: Mapping[str, Any] | None = None) -> None:
    """Write the refusal's audit events in `session` (flush only): one per target, or one naming the policy."""
    details = {**refusal.details, **(extra or {})}
    targets: tuple[tuple[str, int | str], ...] = refusal.targets or (("outbound_policy", refusal.policy),)
    for target_type, target_id in targets:
        record(session, by=by, action=refusal.audit_action, target_type=target_type, target_id=target_id, details=details, now=now)


@event.listens_for(Session, "after_transaction_end")
def _audit_enqueue_refusals(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is not None:
        return
    pending: list[tuple[Principal, dt.datetime, Refusal]] | None = session.info.pop(_ENQUEUE_REFUSALS, None)
    if not pending:
        return
    try:
        with Session(bind=session.get_bind(), join_transaction_mode="create_savepoint") as audit_session:
            for by, now, refusal in pending:
                audit_refusal(audit_session, refusal, by=by, now=now)
            audit_session.commit()
    except Exception as exc:  # the refusal itself already happened; losing its audit line must be loud
        log.error("outbound policies: could not audit a refused email (%s)", type(exc).__name__)
        raise
