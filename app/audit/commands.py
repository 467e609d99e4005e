"""`flask --app wsgi audit verify | checkpoint`: check the chain, sign its head."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask import Flask, current_app

from app.audit import checkpoint as cp
from app.audit.service import chain_head, take_checkpoint
from app.audit.verify import verify_chain
from app.clikit import group
from app.db import utcnow
from app.extensions import db

audit_cli = group("audit", "The tamper-evident audit log: verify the chain, sign checkpoints.")


def checkpoint_path(app: Flask) -> Path:
    """AUDIT_CHECKPOINT_PATH, or instance/audit-checkpoints.log."""
    configured = app.config.get("AUDIT_CHECKPOINT_PATH")
    return Path(configured) if configured else Path(app.config["INSTANCE_PATH"]) / "audit-checkpoints.log"


def checkpoint_keys(app: Flask) -> cp.KeySource:
    """The app's master keyring (app.crypto.keyring), built from its config if not installed."""
    from app.crypto.keyring import EXTENSION_KEY, Keyring

    keyring = app.extensions.get(EXTENSION_KEY)
    return keyring if keyring is not None else Keyring.from_config(app.config)


def write_checkpoint(app: Flask) -> tuple[cp.Checkpoint, bool]:
    """Sign the committed chain head into the app's checkpoint file (shared by the CLI and the worker)."""
    keys = checkpoint_keys(app)
    with db.session_scope() as session:
        return take_checkpoint(session, checkpoint_path(app), key_version=keys.current_version, key_for=cp.key_for(keys), now=utcnow())


@audit_cli.command("checkpoint")
def audit_checkpoint() -> None:
    """Sign the chain head (seq, hash) and append it to AUDIT_CHECKPOINT_PATH."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]  # the proxy's method; Flask types current_app as Flask
    try:
        checkpoint, written = write_checkpoint(app)
    except cp.CheckpointError as exc:
        raise click.ClickException(str(exc)) from None
    state = "signed" if written else "unchanged since the last checkpoint"
    click.echo(f"checkpoint at seq {checkpoint.seq} ({state}), master key version {checkpoint.key_version}")


@audit_cli.command("verify")
@click.option("--quiet", is_flag=True, help="Print only the result line.")
def audit_verify(quiet: bool) -> None:
    """Check every link of the chain and every signed checkpoint; exit 1 at the first broken event."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]  # the proxy's method; Flask types current_app as Flask
    keys = checkpoint_keys(app)
    path = checkpoint_path(app)
    with db.session_scope() as session:
        if quiet:
            result = verify_chain(session, path, cp.key_for(keys))
        else:
            total, _ = chain_head(session)
            with click.progressbar(length=total, label="verifying", file=sys.stderr) as bar:
                result = verify_chain(session, path, cp.key_for(keys), progress=bar.update)
    if not result.ok:
        click.echo(result.message(), err=True)
        raise SystemExit(1)
    click.echo(result.message())
