"""The one place a deletion asks whether an item must be kept: the hold checks registered at app creation.

Every item a run is about to delete, anonymise, redact or rectify passes
`HOLDS.kept(session, run, items)` first (the engine calls it for every batch
of every store, `app.deletion.stores`); an item any check names is left
untouched and listed in the run's report under "kept" with the check's
reason. Legal holds (a later issue) register their check here; until then
the registry is empty and nothing is kept.

A check is `check(session, run, items) -> {item: reason}` for the items it
holds (reason: short, no personal data, e.g. "hold 3: litigation"). It must
not change anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from sqlalchemy.orm import Session

from app.deletion.models import DeletionRun
from app.deletion.report import Item

HoldCheck = Callable[[Session, DeletionRun, Sequence[Item]], Mapping[Item, str]]


class HoldRegistry:
    """Hold checks by name; adding a name again replaces its check (app creation may run more than once)."""

    def __init__(self) -> None:
        self._checks: dict[str, HoldCheck] = {}

    def add(self, name: str, check: HoldCheck) -> None:
        """Register (or replace) a named check."""
        self._checks[name] = check

    def remove(self, name: str) -> None:
        """Forget a named check (no error when absent)."""
        self._checks.pop(name, None)

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


HOLDS = HoldRegistry()
