"""Delivery outcomes: the registry through which the outbox tells the owning domain what became of its email.

"Delivered" means the relay accepted the message (DESIGN.md). Mail knows no
domain, so a domain that must act on an outcome (the DSR: a forward counts as
forwarded only once the relay accepted it, and a refusal escalates at once)
registers a hook at app creation (`app.dsr.setup.register`, called by
`create_app`), as for the intake and policy registries.

The outbox calls `HOOKS.notify(session, outcome, now=)` in the same transaction
as the row's state change: when a row is sent (the relay accepted it), failed
(refused permanently, or given up after its attempts), refused by an outbound
policy at claim time, or bounced (a delivery status notification, reported by
the inbound side). A hook reads the outcome, changes its own rows and flushes;
it never commits, and an exception rolls the state change back with it, so
the row and the domain never disagree.

Registration is by name and idempotent, one registry per process (`HOOKS`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, Protocol

from sqlalchemy.orm import Session

OutcomeState = Literal["sent", "failed", "refused", "bounced"]


@dataclass(frozen=True)
class DeliveryOutcome:
    """What became of one outbox row. `answer` is the relay's reply or the reason, scrubbed of addresses (safe to store)."""

    outbox_id: int
    kind: str
    state: OutcomeState
    answer: str
    related_type: str | None = None
    related_id: int | None = None
    controller_id: int | None = None
    permanent: bool = False  # the relay (or a bounce) refused it for good: retrying cannot help


class DeliveryHook(Protocol):
    """`hook(session, outcome, *, now)`: act on an outcome in the caller's transaction (flush only)."""

    def __call__(self, session: Session, outcome: DeliveryOutcome, *, now: dt.datetime) -> None: ...


class DeliveryHooks:
    """The hooks the domains registered; see the module docstring."""

    def __init__(self) -> None:
        self._hooks: dict[str, DeliveryHook] = {}

    def add(self, name: str, hook: DeliveryHook) -> None:
        """Register `hook` under `name` (e.g. "dsr.forward_delivery"); the same name again replaces it in its place."""
        self._hooks[name] = hook

    @property
    def names(self) -> list[str]:
        """The registered hooks' names, in the order they are called."""
        return list(self._hooks)

    @contextmanager
    def registered(self, name: str, hook: DeliveryHook) -> Iterator[None]:
        """Register a hook for the duration of a `with` block (tests), then restore what was there."""
        saved = dict(self._hooks)
        self.add(name, hook)
        try:
            yield
        finally:
            self._hooks = saved

    def notify(self, session: Session, outcome: DeliveryOutcome, *, now: dt.datetime) -> None:
        """Call every hook with `outcome`, in registration order, in the caller's transaction."""
        for hook in list(self._hooks.values()):
            hook(session, outcome, now=now)


HOOKS = DeliveryHooks()
