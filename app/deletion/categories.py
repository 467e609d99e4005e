"""Record categories: the stores a retention category's items live in, beside tickets, registered at app creation.

A retention category that is not "whole tickets" (quarantined mail, delivered outbox payloads, DSR records,
export files, staff sessions, login addresses, ...) is a `RecordCategory`: how to find its items due after a
cutoff (or by id), which controllers hold items of it, and what `delete` / `anonymise` do to a batch of them.
The engine imports no domain, so the domain that owns a table registers its category here
(`RECORD_STORES.add(category)`); a run of the engine over some of its items has the scope kind "records"
(`Scope.records(name, ids)`): its plan fixes the ids, then `RECORDS_STORE` walks them 200 at a time, every
batch through the one hold check (`app.deletion.holds`), and hands the rest to the category's treatment.

`find(session, query)` returns items in id order, each an `Item` naming its controller (None: the desk), its
ticket when it has one, and what holds key on (`owners`, `subjects`); it must only return items the action
still changes (an anonymised row is not found again), so a run and its dry run count the same and a resumed
run does nothing twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from app.deletion.report import Item
from app.deletion.stores import Batch, RunContext, Store

BATCH = 200


@dataclass(frozen=True)
class Query:
    """What `find` is asked: the items of one owner (None: the desk) whose event is at or before `cutoff`, after
    id `after`, at most `limit`; or (`ids` given) these items whatever their age, still to be changed by `action`."""

    action: str
    controller_id: int | None = None
    cutoff: dt.datetime | None = None
    after: int = 0
    limit: int = BATCH
    ids: Sequence[int] | None = None
    # False: the caller will not ask the hold check about these items (it only needs their ids), so a store may leave
    # out what only holds key on (owners, subjects) when it is costly to find (a quarantined original's header).
    holds: bool = True


Treat = Callable[[RunContext, Sequence[Item]], None]


@dataclass(frozen=True)
class RecordCategory:
    """One retention category's store: its name (as in `app.retention.periods`), what its items are called in
    reports and previews, who owns items of it, how to find them, and what each action does to them."""

    name: str
    what: str
    unit: str
    owners: Callable[[Session], list[int | None]]
    find: Callable[[Session, Query], list[Item]]
    treat: Mapping[str, Treat] = field(default_factory=dict)


class RecordRegistry:
    """Record categories by name; adding a name again replaces it (app creation may run more than once)."""

    def __init__(self) -> None:
        self._categories: dict[str, RecordCategory] = {}

    def add(self, category: RecordCategory) -> None:
        """Register (or replace) a category's store."""
        self._categories[category.name] = category

    def get(self, name: str) -> RecordCategory | None:
        """The store of a category (None: nobody registered it)."""
        return self._categories.get(name)

    def names(self) -> list[str]:
        """The registered categories."""
        return list(self._categories)


RECORD_STORES = RecordRegistry()


def category_of(ctx: RunContext) -> RecordCategory:
    """The category a records-scope run works on (LookupError when its store is not registered in this process)."""
    name = str(ctx.params.get("category") or "")
    category = RECORD_STORES.get(name)
    if category is None:
        raise LookupError(f"no record store registered for {name!r}")
    return category


def plan_records(ctx: RunContext) -> None:
    """A records run's plan: the ids it was given, fixed in the cursor."""
    ctx.plan["item_ids"] = sorted({int(i) for i in ctx.params.get("item_ids") or []})
    ctx.report.plan(items=len(ctx.plan["item_ids"]))


def _select(ctx: RunContext, after: int) -> Batch:
    rest = [i for i in ctx.ids("item_ids") if i > after]
    ids = rest[:BATCH]
    items = category_of(ctx).find(ctx.session, Query(ctx.run.action, ids=ids)) if ids else []
    return Batch(items, after=ids[-1] if ids else after, done=len(rest) <= BATCH)


def _apply(ctx: RunContext, items: Sequence[Item]) -> None:
    treat = category_of(ctx).treat.get(ctx.run.action)
    if treat is None:
        for item in items:
            ctx.report.fail(item.what, item.id, f"no {ctx.run.action} for this category")
        return
    if items:
        treat(ctx, items)


RECORDS_STORE = Store("records", _select, _apply)
