"""The DSR domain's errors, on the desk's bases (app.exceptions): app/errors.py maps them for the web and the CLI."""

from __future__ import annotations

from app.exceptions import DeskError, NotFound, Refused


class DsrError(DeskError):
    """Base of the DSR service's errors."""


class DsrNotFound(DsrError, NotFound):
    """No request with that id (or not in the caller's scope)."""


class InvalidDsr(DsrError, Refused, ValueError):
    """Input the desk refuses; the message is safe to show (names the field, never the value)."""
