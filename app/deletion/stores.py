"""What a phase of a run is: a store walked in id order, one batch at a time, through the one hold check.

Each store of a run is a `Store`: `select(ctx, after)` returns the next batch
of items (and where the cursor goes next), the engine asks the hold registry
about them (`app.deletion.holds`), reports the held ones as kept, and
`apply(ctx, items)` changes only the rest. No store can skip the check: it
never sees a held item. Stores flush; the engine commits each batch with its
cursor.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sqlalchemy.orm import Session

from app.deletion.models import DeletionRun
from app.deletion.report import Item, Report
from app.deletion.rewrite import Rewriter
from app.principal import Principal


@dataclass
class RunContext:
    """One batch of one run: the session, the run, its decrypted parameters, its plan (the cursor) and its report."""

    session: Session
    run: DeletionRun
    params: dict[str, Any]
    plan: dict[str, Any]
    report: Report
    by: Principal
    now: dt.datetime

    @cached_property
    def rewriter(self) -> Rewriter:
        """The subject's identifiers (terms, names, phones, IBANs) and what each becomes ("[erased]", or the corrected value)."""
        p = self.params
        return Rewriter(p.get("replace") or {}, names=p.get("names") or [], phones=p.get("phones") or [], ibans=p.get("ibans") or [])

    @property
    def new_email(self) -> str | None:
        """Rectification: the subject's corrected address (None: the address is cleared)."""
        return self.params.get("new_email") if self.run.action == "rectify" else None

    @property
    def erasing(self) -> bool:
        """True when the subject's data goes (redact); False when it is corrected (rectify)."""
        return self.run.action != "rectify"

    def plan_set(self, key: str) -> set[int]:
        """A set of ids fixed by the plan, built once per batch."""
        cache: dict[str, set[int]] = self.__dict__.setdefault("_sets", {})
        if key not in cache:
            cache[key] = set(self.ids(key))
        return cache[key]

    def ids(self, key: str) -> list[int]:
        """A list of ids fixed by the plan (empty when absent)."""
        return [int(i) for i in self.plan.get(key) or []]


@dataclass(frozen=True)
class Batch:
    """The next items of a store, the id the cursor moves to after them, and whether the store is then done."""

    items: list[Item] = field(default_factory=list)
    after: int = 0
    done: bool = True


@dataclass(frozen=True)
class Store:
    """A phase of a run: a name (shown in progress and audit), how to select a batch, how to act on it."""

    name: str
    select: Callable[[RunContext, int], Batch]
    apply: Callable[[RunContext, Sequence[Item]], None]


def one_pass(items: list[Item]) -> Batch:
    """A store small enough for one batch (the plan bounded it): everything, done."""
    return Batch(items, after=items[-1].id if items else 0, done=True)
