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
  the domain's own record and events;
- `release(session, source, by=, now=)` when a legal hold that made `source`
  (a finished run of this authority, or a release of one) keep items has
  ended: start the run that takes them now, under the authority
  `hold_release` with id = `source.id` (None: the domain cannot; the
  release module then re-runs a tickets or controller scope by itself).

A `hold_release` run acts for the run it releases: its hooks are those of the
authority at the root of its chain of sources (`origin`), so a release of a
DSR erasure is still the controller's instruction at work (its records, its
history, its notice). An authority kind nobody registered runs with no hooks
(an operator command).
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

RELEASE = "hold_release"


class AfterBatch(Protocol):
    """`after_batch(session, run, by=, now=)`: called in the batch's transaction, after the engine wrote the run."""

    def __call__(self, session: Session, run: DeletionRun, *, by: Principal, now: dt.datetime) -> None: ...


class Release(Protocol):
    """`release(session, source, by=, now=)`: start (flush) the run that takes what `source` kept; None when this domain cannot."""

    def __call__(self, session: Session, source: DeletionRun, *, by: Principal, now: dt.datetime) -> DeletionRun | None: ...


def _no_plan(ctx: RunContext) -> None:
    return None


def _no_progress(session: Session, run: DeletionRun, *, by: Principal, now: dt.datetime) -> None:
    return None


def _no_release(session: Session, source: DeletionRun, *, by: Principal, now: dt.datetime) -> DeletionRun | None:
    return None


@dataclass(frozen=True)
class AuthorityHooks:
    """A domain's additions to the runs of its authority kind (see the module docstring)."""

    plan: Callable[[RunContext], None] = _no_plan
    stores: tuple[Store, ...] = ()
    after_batch: AfterBatch = _no_progress
    release: Release = _no_release


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

    def for_run(self, session: Session, run: DeletionRun) -> AuthorityHooks:
        """The hooks a run is advanced with: its authority's, or for a hold release those of its origin's authority."""
        return self.get(origin(session, run).authority_kind)


def origin(session: Session, run: DeletionRun) -> DeletionRun:
    """The run a hold release acts for: its sources followed back to the first run that is not a release (itself otherwise)."""
    seen: set[int] = set()
    while run.authority_kind == RELEASE and run.authority_id is not None and run.id not in seen:
        seen.add(run.id)
        source = session.get(DeletionRun, run.authority_id)
        if source is None:
            break
        run = source
    return run


AUTHORITIES = AuthorityRegistry()
