"""The one place a deletion asks whether an item must be kept: the hold checks registered at app creation.

Every item a run is about to delete, anonymise, redact or rectify passes
`HOLDS.kept(session, run, items)` first (the engine calls it for every batch
of every store, `app.deletion.stores`); an item any check names is left
untouched and listed in the run's report under "kept" with the check's
reason. Legal holds (a later issue) register their check here; until then
the registry is empty and nothing is kept.

A check is `check(session, run, items) -> {item: reason}` for the items it
holds (reason: short, no personal data, e.g. "hold 3: litigation"). It must
not change anything. The same name may register a describer, which turns the
reasons a report lists back into what a controller is told about each hold
(its basis text and until when: Pexgle §13.3), without the reporting domain
importing the one that placed the hold.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.deletion.models import DeletionRun
from app.deletion.report import Item

HoldCheck = Callable[[Session, DeletionRun, Sequence[Item]], Mapping[Item, str]]


@dataclass(frozen=True)
class HoldFacts:
    """What a controller is told about one hold a report names: its basis (in words) and text, last day kept (None: until lifted), end."""

    reason: str
    basis: str
    basis_text: str
    last_day: dt.date | None
    # The day it was lifted or its end date passed (None: still in force).
    ended: dt.date | None


HoldDescriber = Callable[[Session, Sequence[str], dt.datetime], Mapping[str, HoldFacts]]


class HoldRegistry:
    """Hold checks by name; adding a name again replaces its check (app creation may run more than once)."""

    def __init__(self) -> None:
        self._checks: dict[str, HoldCheck] = {}
        self._describers: dict[str, HoldDescriber] = {}

    def add(self, name: str, check: HoldCheck) -> None:
        """Register (or replace) a named check."""
        self._checks[name] = check

    def describe_with(self, name: str, describer: HoldDescriber) -> None:
        """Register (or replace) how the holds of a named check are described (`describe`)."""
        self._describers[name] = describer

    def remove(self, name: str) -> None:
        """Forget a named check and its describer (no error when absent)."""
        self._checks.pop(name, None)
        self._describers.pop(name, None)

    def names(self) -> list[str]:
        """The registered checks, in the order they are asked."""
        return list(self._checks)

    def kept(self, session: Session, run: DeletionRun, items: Sequence[Item]) -> dict[Item, str]:
        """The items some check holds, with the first reason given; empty when nothing is held."""
        held: dict[Item, str] = {}
        if not items:
            return held
        for check in list(self._checks.values()):
            for item, reason in check(session, run, items).items():
                held.setdefault(item, reason)
        return held

    def describe(self, session: Session, reasons: Sequence[str], now: dt.datetime) -> dict[str, HoldFacts]:
        """The facts of each reason some describer knows (a reason none knows is left out), as at `now`."""
        found: dict[str, HoldFacts] = {}
        wanted = sorted(set(reasons))
        for describer in list(self._describers.values()):
            for reason, facts in describer(session, wanted, now).items():
                found.setdefault(reason, facts)
        return found


HOLDS = HoldRegistry()
