"""`flask --app wsgi audit verify | checkpoint`: check the chain, sign its head."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask import current_app

from app.audit import checkpoint as cp
from app.audit.service import chain_head, sign_checkpoint
from app.audit.verify import verify_chain
from app.clikit import group
from app.crypto.keyring import get_keyring
from app.db import utcnow
from app.extensions import db

audit_cli = group("audit", "The tamper-evident audit log: verify the chain, sign checkpoints.")


@audit_cli.command("checkpoint")
@click.option("--path", "path", type=click.Path(dir_okay=False), help="Append to this file (its folder must exist) instead of AUDIT_CHECKPOINT_PATH.")
@click.option("--syslog", "syslog_target", metavar="ADDRESS", help="Also send the signed line to syslog: a socket path (/dev/log) or HOST:PORT (UDP).")
def audit_checkpoint(path: str | None, syslog_target: str | None) -> None:
    """Sign the chain head (seq, hash) and append it to AUDIT_CHECKPOINT_PATH (or --path); --syslog ships it off the host too."""
    if path:
        cp.require_folder(Path(path))  # exit 2 with one line, nothing written (the configured path's folder is made)
    config = {**current_app.config, "AUDIT_CHECKPOINT_PATH": path} if path else current_app.config
    # A checkpoint file that cannot be read or written (CheckpointError) is one line, exit 1 (app.clikit.DeskGroup).
    with db.session_scope() as session:
        checkpoint, written = sign_checkpoint(session, config, get_keyring(current_app), now=utcnow())
    if syslog_target:
        cp.send_to_syslog(syslog_target, checkpoint)
    state = "signed" if written else "unchanged since the last checkpoint"
    click.echo(f"checkpoint at seq {checkpoint.seq} ({state}), master key version {checkpoint.key_version}")


@audit_cli.command("verify")
@click.option("--quiet", is_flag=True, help="Print only the result line.")
def audit_verify(quiet: bool) -> None:
    """Check every link of the chain and every signed checkpoint; exit 1 at the first broken event."""
    keys = get_keyring(current_app)
    path = cp.checkpoint_path(current_app.config)
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
