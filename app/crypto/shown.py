"""Showing a page while some of its values were crypto-shredded: a placeholder instead of an error, on pages only.

A controller whose data keys were destroyed still has rows (tickets, messages, requests) that staff can open. While a
page is built (`placeholders()`: the web layer enters it around rendering and around read-only page queries), an
encrypted text value whose key was *shredded* reads as `UNREADABLE_SHREDDED`, an `Unreadable` string, never as
ciphertext. Everywhere else (exports, sends, rewrites, erasure) the same read still raises `KeyShredded`, so nothing
is sent, exported or re-encrypted with a placeholder in place of the data. A value that fails authentication
(altered, moved) raises in both cases: that is not a shredded key but a fault to report.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

UNREADABLE_SHREDDED = "unreadable: this controller's key was destroyed (crypto-shredded)"

_SHOWING: ContextVar[bool] = ContextVar("dsr_desk_showing_placeholders", default=False)


class Unreadable(str):
    """The placeholder read for a value whose key was shredded (a `str`, so a page shows it like any value)."""

    __slots__ = ()


@contextmanager
def placeholders() -> Iterator[None]:
    """Within this block, a shredded value of an encrypted text field reads as the placeholder (for pages only)."""
    token = _SHOWING.set(True)
    try:
        yield
    finally:
        _SHOWING.reset(token)


def showing_placeholders() -> bool:
    """Whether a shredded value reads as the placeholder here (inside `placeholders()`)."""
    return _SHOWING.get()


def placeholder() -> Unreadable:
    """The placeholder of a shredded value."""
    return Unreadable(UNREADABLE_SHREDDED)
