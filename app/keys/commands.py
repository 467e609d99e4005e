"""`flask --app wsgi keys status | keys rotate [--reencrypt]`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click
from flask import current_app

from app.audit.checkpoint import checkpoint_path, last_checkpoint
from app.clikit import group, operator, stop_on_ctrl_c
from app.db import utcnow
from app.extensions import db
from app.jobs.locks import LockHeld, ProcessLock, advisory_key
from app.keys import rotation
from app.keys.service import key_status, rewrap_keys

keys_cli = group("keys", "Encryption keys: status, rotation (WECO §9.1(a)).")


@keys_cli.command("status")
def keys_status() -> None:
    """Per master key version: data keys and values using it, and whether its old secret may be removed."""
    newest = last_checkpoint(checkpoint_path(current_app.config))
    with db.session_scope() as session:
        status = key_status(session, newest_checkpoint_version=newest.key_version if newest else None)
        progress = rotation.describe_progress(session)
    click.echo(f"current master key version: {status.current_version}")
    for v in status.versions:
        if v.current:
            note = "current"
        elif (v.data_keys or v.period_keys) and not v.configured:
            note = f"IN USE but {v.variable} is not set: restore it, then run keys rotate"
        elif v.data_keys or v.period_keys:
            note = f"{v.variable} still needed: run keys rotate"
        elif v.signs_newest_checkpoint and not v.configured:
            note = f"{v.variable} is not set but signed the newest audit checkpoint: run audit checkpoint under the current version"
        elif v.signs_newest_checkpoint:
            note = f"{v.variable} still signs the newest audit checkpoint: run audit checkpoint, then it may be removed"
        else:
            note = f"{v.variable} may be removed"
        months = f"\taudit month keys {v.period_keys}" if v.period_keys else ""
        click.echo(f"v{v.version}\tdata keys {v.data_keys}\tvalues {v.values}{months}\t{note}")
    click.echo(f"values on retired data keys (pending keys rotate --reencrypt): {status.values_on_retired_keys}")
    if progress:
        click.echo(f"re-encryption under way or stopped: {progress} (keys rotate --reencrypt resumes it)")
    click.echo(f"shredded data keys: {status.shredded_keys}")
    click.echo(f"encrypted columns: {', '.join(status.fields) or '-'}")


@keys_cli.command("rotate")
@click.option("--reencrypt", is_flag=True, help="Also replace the data keys and re-encrypt every value (resumable, in batches).")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=rotation.BATCH_ROWS, show_default=True, help="Rows per batch (--reencrypt).")
def keys_rotate(reencrypt: bool, batch_size: int) -> None:
    """Re-wrap every data key under the current master version; with --reencrypt, new data keys for every value."""
    # One rotation at a time (across processes and hosts sharing the database): a second run would
    # retire the keys the first one is moving values onto, or redo its batches.
    lock = ProcessLock(db.engine, advisory_key("keys rotate"), Path(current_app.config["INSTANCE_PATH"]) / "keys-rotate.lock")
    try:
        with lock, stop_on_ctrl_c("the re-encryption") as stop:
            _rotate(reencrypt, batch_size, should_stop=stop.is_set)
    except LockHeld:
        raise click.ClickException("another keys rotate is running; nothing was changed (a stopped --reencrypt run resumes when started again)") from None
    except rotation.RotationStopped as stopped:
        click.echo(f"stopped: {stopped}; run keys rotate --reencrypt again to resume", err=True)
        sys.exit(130)  # the shell's status for a stop by SIGINT
    except KeyboardInterrupt:  # a second Ctrl-C: mid-batch; the last committed batch is where it resumes
        with db.session_scope() as session:
            where = rotation.describe_progress(session)
        click.echo(f"\nstopped: {where or 'before the first batch'}; run keys rotate --reencrypt again to resume", err=True)
        sys.exit(130)


def _rotate(reencrypt: bool, batch_size: int, *, should_stop: Callable[[], bool]) -> None:
    # A missing master secret (KeyringError) or a value that does not re-encrypt (RotationError) is one line,
    # exit 1 (app.clikit.DeskGroup); the caller handles the lock and a stop on Ctrl-C.
    if not reencrypt:
        with db.session_scope() as session:
            moved = rewrap_keys(session, by=operator("keys rotate"), now=utcnow())
        click.echo(f"{moved} data keys re-wrapped under the current master key version")
        return
    bar = click.progressbar(length=1, label="re-encrypting", show_pos=True, file=sys.stderr)

    def total(n: int) -> None:
        bar.length = max(n, 1)
        bar.pos = 0

    def progress(n: int) -> None:
        bar.update(n)

    with bar:
        result = rotation.run(
            db.session_scope,
            by=operator("keys rotate --reencrypt"),
            clock=utcnow,
            batch_rows=batch_size,
            on_total=total,
            on_progress=progress,
            should_stop=should_stop,
        )
    resumed = " (resumed)" if result.resumed else ""
    click.echo(f"re-encryption finished{resumed}: {result.rotated} values re-encrypted, {result.keys_destroyed} old data keys destroyed")
