"""Doorbells: after a commit, ask a worker to do the work that the committed rows describe.

The database is the source of truth and the broker only a doorbell (DESIGN.md).
A service writes its row and notes the row's id with `ring_after_commit`; when
the session's transaction commits, one message per id goes to the actor, and
when it rolls back the ids are forgotten, so no worker looks for a row that
was never committed. A send that fails is logged and left to the sweeper of
the domain, which rings again: a broker outage delays work, never loses it.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
from collections.abc import Iterable
from typing import Any

import dramatiq
from sqlalchemy import event
from sqlalchemy.orm import Session

# Set by the scheduler while the broker is unreachable: doorbells are not rung (the sweepers, run by the
# scheduler itself meanwhile, do the work), so an outage is logged once a minute, not once per row.
BROKER_OUTAGE = threading.Event()

# The longest delay a doorbell is rung with. dramatiq keeps a delayed message in the worker's memory, holding one of
# its prefetch slots until it is due, so thousands of retries waiting hours in backoff would starve the short waits
# (a probe after a relay outage). A longer wait is left to the domain's sweeper (every 30-60 s), which rings the row
# once it is due: at most one sweep interval later than its due time.
LONGEST_DELAY = dt.timedelta(minutes=2)


class Doorbell:
    """The doorbell of one actor: ids noted in a transaction are rung after it commits.

    `broker_down` is the warning logged for an id whose message could not be sent
    (%s: the error's type name, then the id); `no_actor`, when given, the warning
    for a process where the actor is not declared (%s: actor name, %d: how many ids).
    """

    def __init__(self, actor_name: str, *, key: str, log: logging.Logger, broker_down: str, no_actor: str | None = None) -> None:
        self.actor_name = actor_name
        self.key = key
        self.log = log
        self.broker_down = broker_down
        self.no_actor = no_actor
        event.listen(Session, "after_commit", self._ring_after_commit)
        event.listen(Session, "after_rollback", self._forget_after_rollback)

    def ring_after_commit(self, session: Session, ids: Iterable[int]) -> None:
        """Ring for these ids once the session's transaction commits (nothing if it rolls back)."""
        session.info.setdefault(self.key, set()).update(ids)

    def ring(self, ids: Iterable[int], *, delay: dt.timedelta | None = None) -> int:
        """Send one message per id, in the order given; returns how many were sent (a broker failure is logged, not raised).

        Nothing is sent for a delay over LONGEST_DELAY: the sweeper rings those rows when they are due.
        """
        ids = list(ids)
        if BROKER_OUTAGE.is_set() or (delay is not None and delay > LONGEST_DELAY):
            return 0
        try:
            actor_ = dramatiq.get_broker().get_actor(self.actor_name)
        except dramatiq.errors.ActorNotFound:
            if self.no_actor:
                self.log.warning(self.no_actor, self.actor_name, len(ids))
            return 0
        # Rounded up, plus a few ms: a doorbell that rings before its row is due finds nothing to do and is lost until the sweeper.
        options: dict[str, Any] = {"delay": math.ceil(delay.total_seconds() * 1000) + 5} if delay and delay.total_seconds() > 0 else {}
        rung = 0
        for id_ in ids:
            try:
                actor_.send_with_options(args=(id_,), **options)
            except Exception as exc:  # any broker client error means "down"; the row is safe in the database
                self.log.warning(self.broker_down, type(exc).__name__, id_)
                continue
            rung += 1
        return rung

    def _ring_after_commit(self, session: Session) -> None:
        ids = session.info.pop(self.key, None)
        if ids:
            self.ring(sorted(ids))

    def _forget_after_rollback(self, session: Session) -> None:
        session.info.pop(self.key, None)
