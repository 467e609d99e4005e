"""A run's report: what was changed per store with counts, what failed, what was kept and why, what is left for review.

Stored as JSON on the run (ids, counts and reason codes only, never a value):

    {"planned": {"tickets": 3, ...},
     "stores":  {"ticket_messages": {"messages": 8}, "blobs": {"raw_destroyed": 4}, ...},
     "failed":  [{"what": "message", "id": 12, "reason": "unreadable"}, ...],
     "kept":    [{"what": "ticket", "id": 7, "reason": "hold 3: litigation"}, ...],
     "review":  [{"what": "attachment", "id": 9, "reason": "..."}, ...]}

A store is the table (or file store) that was changed; its counts are named
by what was done to it. `changes(report)` flattens the counts for a summary
line (the DSR's record and its notice to the controller).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Item:
    """One thing a run is about to change: its kind ("ticket", "message", ...) and id, with what a hold may key on."""

    what: str
    id: int
    controller_id: int | None = None
    ticket_id: int | None = None
    # Other controllers the item also belongs to (a DSR forwarded to several; quarantined mail from a controller's
    # domain), and the subject's address as each owner's email blind index: what controller and subject holds key on.
    owners: tuple[int, ...] = ()
    subjects: tuple[bytes, ...] = ()


class Report:
    """A mutable copy of a run's report JSON; `data` is written back to the run after each batch."""

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self.data: dict[str, Any] = json.loads(json.dumps(dict(data or {})))

    def plan(self, **counts: int) -> None:
        """Record what the plan found before anything changed."""
        self.data.setdefault("planned", {}).update(counts)

    def count(self, store: str, what: str, n: int = 1) -> None:
        """Add `n` to a store's count (0 still names the count: the store was looked at)."""
        counts = self.data.setdefault("stores", {}).setdefault(store, {})
        counts[what] = int(counts.get(what, 0)) + n

    def fail(self, what: str, item_id: int, reason: str) -> None:
        """An item the run could not handle (listed once)."""
        _add(self.data.setdefault("failed", []), what, item_id, reason)

    def clear_fail(self, what: str, item_id: int) -> None:
        """An item that failed before and has now been handled."""
        if self.data.get("failed"):
            self.data["failed"] = [f for f in self.data["failed"] if not (f["what"] == what and f["id"] == item_id)]

    def failed_ids(self, what: str) -> set[int]:
        """The ids of the failed items of one kind."""
        return {int(f["id"]) for f in self.data.get("failed", []) if f["what"] == what}

    def keep(self, item: Item, reason: str) -> None:
        """An item the run left untouched on purpose (a legal hold), with why."""
        _add(self.data.setdefault("kept", []), item.what, item.id, reason)

    def review(self, what: str, item_id: int, reason: str) -> None:
        """An item the run cannot decide about: listed for a person to look at."""
        _add(self.data.setdefault("review", []), what, item_id, reason)


def _add(entries: list[dict[str, Any]], what: str, item_id: int, reason: str) -> None:
    if not any(e["what"] == what and e["id"] == item_id for e in entries):
        entries.append({"what": what, "id": item_id, "reason": reason})


def changes(report: Mapping[str, Any]) -> dict[str, int]:
    """Every store's counts in one mapping (a count named in two stores is summed), sorted by name."""
    flat: dict[str, int] = {}
    for counts in (report.get("stores") or {}).values():
        for what, n in counts.items():
            flat[what] = flat.get(what, 0) + int(n)
    return dict(sorted(flat.items()))


def summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """The report as a domain's record of it shows it: flat counts, and the failed, kept and review lists."""
    return {
        "changed": changes(report),
        "failed": list(report.get("failed", [])),
        "kept": list(report.get("kept", [])),
        "review": list(report.get("review", [])),
    }
