"""Copies of outbox mail kept outside the database (the file outbox's `.eml` files), registered at app creation.

The engine cannot read the app's config: whoever knows where a copy of a sent
email lives registers a remover for it (`OUTBOX_FILES.add(name, remove)`,
`remove(message_id) -> bool`: True when a file was deleted), and a run calls
`OUTBOX_FILES.remove(message_id)` for each delivered outbox row it purges or deletes
(an erasure, a retention run over tickets or over outbox payloads).
"""

from __future__ import annotations

from collections.abc import Callable

Remover = Callable[[str], bool]


class FileRegistry:
    """Removers by name; adding a name again replaces it (app creation may run more than once)."""

    def __init__(self) -> None:
        self._removers: dict[str, Remover] = {}

    def add(self, name: str, remover: Remover) -> None:
        """Register (or replace) a named remover."""
        self._removers[name] = remover

    def discard(self, name: str) -> None:
        """Forget a named remover (no error when absent)."""
        self._removers.pop(name, None)

    def active(self) -> bool:
        """Whether any remover is registered (no file copies to look for otherwise)."""
        return bool(self._removers)

    def remove(self, message_id: str) -> int:
        """Delete every registered copy of the email with this Message-ID; how many files went."""
        return sum(1 for remover in list(self._removers.values()) if remover(message_id))


OUTBOX_FILES = FileRegistry()
