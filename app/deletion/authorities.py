"""What the domain behind an authority adds to its runs, registered at app creation (the engine imports no domain).

A DSR erasure's run must also find the request's own source ticket, rewrite
the request's records and note on the request what was done; a retention
run will record its ledger. The domain that owns an authority kind registers
`AuthorityHooks` for it (`AUTHORITIES.add("instruction", hooks)`), and the
engine calls them:

- `plan(ctx)` while the run fixes its plan, after the engine found the
  subject's tickets and before it finds their messages elsewhere: it may add
  ticket ids (`ctx.plan["ticket_ids"]`), outbox relations
  (`ctx.plan["related"][type]`) and keys of its own;
- `stores`: phases of its own records, walked after the engine's, through the
  same hold check;
- `after_batch(session, run, by=, now=)` after every committed-to-be batch,
  including the one that finishes the run (`run.is_finished`): progress,
  the domain's own record and events.

An authority kind nobody registered runs with no hooks (an operator command).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.orm import Session

from app.deletion.models import AUTHORITY_KINDS, DeletionRun
from app.deletion.stores import RunContext, Store
from app.principal import Principal


class AfterBatch(Protocol):
    """`after_batch(session, run, by=, now=)`: called in the batch's transaction, after the engine wrote the run."""

    def __call__(self, session: Session, run: DeletionRun, *, by: Principal, now: dt.datetime) -> None: ...


def _no_plan(ctx: RunContext) -> None:
    return None


def _no_progress(session: Session, run: DeletionRun, *, by: Principal, now: dt.datetime) -> None:
    return None


@dataclass(frozen=True)
class AuthorityHooks:
    """A domain's additions to the runs of its authority kind (see the module docstring)."""

    plan: Callable[[RunContext], None] = _no_plan
    stores: tuple[Store, ...] = ()
    after_batch: AfterBatch = _no_progress


NO_HOOKS = AuthorityHooks()


class AuthorityRegistry:
    """Hooks by authority kind; registering a kind again replaces its hooks (app creation may run more than once)."""

    def __init__(self) -> None:
        self._hooks: dict[str, AuthorityHooks] = {}

    def add(self, kind: str, hooks: AuthorityHooks) -> None:
        """Register (or replace) the hooks of one authority kind."""
        if kind not in AUTHORITY_KINDS:
            raise ValueError(f"unknown authority kind {kind!r}")
        self._hooks[kind] = hooks

    def get(self, kind: str) -> AuthorityHooks:
        """The hooks of an authority kind (none registered: no hooks)."""
        return self._hooks.get(kind, NO_HOOKS)


AUTHORITIES = AuthorityRegistry()
