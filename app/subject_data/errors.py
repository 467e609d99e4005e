"""The execution service's errors (messages are safe to show: ids and reasons, never personal data)."""

from __future__ import annotations

from app.exceptions import DeskError, NotFound, Refused


class SubjectDataError(DeskError):
    """Base of the execution service's errors."""


class NotAuthorised(SubjectDataError, Refused):
    """No confirmed instruction of the right kind from that controller."""


class InvalidRequest(SubjectDataError, Refused, ValueError):
    """Refused input (nothing changed)."""


class RunNotFound(SubjectDataError, NotFound):
    """No run with that id."""


class ExportNotFound(SubjectDataError, NotFound):
    """No export file with that id (or its file was deleted)."""
