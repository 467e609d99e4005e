"""The few bases every domain's exceptions derive from, so the edges map them once (`app.errors`).

- `NotFound`: the object does not exist or is out of the caller's scope (web 404, CLI exit 1).
- `Refused`: the request was understood and refused; the message is safe to show a user (web flash + redirect, CLI exit 1).
- `Conflict`: the object is not in a state that allows this now (web 409 or flash, CLI exit 1).

Messages never carry personal data: they are shown on pages, printed by commands and may reach logs.
"""

from __future__ import annotations


class DeskError(Exception):
    """Base of every domain error of the desk."""


class NotFound(DeskError):
    """No such object, or not one the caller may see."""


class Refused(DeskError):
    """Refused with a reason a user may read (invalid input, a rule of the DPA, a missing instruction)."""


class Conflict(DeskError):
    """The object's current state does not allow this (already done, running, locked)."""
