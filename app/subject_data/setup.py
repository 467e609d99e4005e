"""The execution part of the DSR domain at app creation: its hooks on the deletion engine (`create_app` calls `register(app)`).

Registration is by authority kind and idempotent, so every app a process
creates (web, workers, CLI, tests) leaves exactly one entry. (Not in
`app.dsr.setup`: this package imports app.dsr, so the reverse import would
close a cycle between the two packages.)
"""

from __future__ import annotations

from flask import Flask

from app.subject_data import erasure, views


def register(app: Flask) -> None:
    """Register the request's hooks for engine runs under a confirmed instruction (safe to call again)."""
    erasure.register()
    # The restriction guard for views outside this package that show ticket data (app.dsr.views).
    app.extensions["desk.ticket_guard"] = views.guard_ticket
