"""What every `flask --app wsgi GROUP COMMAND` edge shares: a command group whose failures end in one line on
stderr (never a traceback), the operator principal, and a clean stop on Ctrl-C for long jobs.

Errors mapped once for the command line (`DeskGroup`), as `app.errors` does for the web; a command catches nothing:
- `NotFound`, `Refused`, `Conflict` (the operator's request cannot be done): `Error: <message>`, exit 2;
- any other `DeskError` (the desk could not do it: a key, a file, a lock) and an unreachable database: exit 1.

Command modules (`app/<domain>/commands.py`) import this, never `app.cli` (the registrar that imports them).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from flask.cli import AppGroup
from sqlalchemy.exc import DBAPIError, OperationalError

from app.exceptions import Conflict, DeskError, NotFound, Refused
from app.principal import Principal


class RequestRefused(click.ClickException):
    """The operator's request cannot be done (not found, refused, conflicting): one line, exit 2."""

    exit_code = 2


# An id argument or option: a positive integer that fits the id columns (a larger one is a usage error, never a
# database overflow). The same bound as the web's `<int:...>` converter (app.web.MAX_ID).
ID = click.IntRange(1, 2**31 - 1)


class DeskGroup(AppGroup):
    """A command group whose failures end in one line on stderr, not a traceback (mapped as the module says)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (NotFound, Refused, Conflict) as exc:
            raise RequestRefused(_one_line(exc)) from None
        except DeskError as exc:
            raise click.ClickException(_one_line(exc)) from None
        except (OperationalError, DBAPIError) as exc:
            reason = type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__
            raise click.ClickException(f"the database is unreachable or refused the request ({reason})") from None


def _one_line(exc: DeskError) -> str:
    """The error's message on one line; its kind when it has none."""
    return " ".join(str(exc).split()) or type(exc).__name__


def group(name: str, help_text: str) -> DeskGroup:
    """A command group of the operator contract."""
    return DeskGroup(name, help=help_text)


@contextmanager
def stop_on_ctrl_c(what: str) -> Iterator[threading.Event]:
    """For a long job that commits batch by batch: the first Ctrl-C asks it to stop after the current batch
    (set on the event it checks between batches); a second one interrupts at once.

    Stopping between batches never leaves a statement half-run (a KeyboardInterrupt inside a database call
    can surface as a driver error), and the job's saved cursor then names exactly where it stopped.
    """
    stop = threading.Event()

    def ask(_signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.echo(f"\nstopping {what} after the current batch (Ctrl-C again to stop at once)", err=True)

    try:
        previous = signal.signal(signal.SIGINT, ask)
    except ValueError:  # not the main thread (e.g. an embedding caller): plain KeyboardInterrupt behaviour
        yield stop
        return
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def operator(command: str) -> Principal:
    """The principal recorded for an operator command."""
    return Principal.system(f"cli:{command}")
