"""`flask --app wsgi retention run|policies|policy set|holds|hold add|hold lift|runs` (issue 14, docs/retention.md)."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import re
import sys
from typing import Any

import click
from flask import current_app
from sqlalchemy.orm import Session

from app.clikit import ID, group, operator, stop_on_ctrl_c
from app.controllers.models import Controller
from app.db import utcnow
from app.deletion import categories as record_stores
from app.deletion import purge
from app.extensions import db
from app.jobs.locks import LockHeld
from app.principal import Principal
from app.retention import holds, policies, release, runner
from app.retention.categories import TICKET_CATEGORIES
from app.retention.models import HOLD_BASES
from app.retention.periods import ACTIONS, CATEGORIES, DEFAULTS
from app.retention.schedule import run_lock
from app.tickets.lookup import find_by_reference
from app.tickets.models import Ticket
from app.web import id_value

retention_cli = group("retention", "Retention policies, legal holds and retention runs (GDPR Art. 5(1)(e); WECO §8.2).")
hold_cli = group("hold", "Place or lift a legal hold.")
policy_cli = group("policy", "Change a retention policy (a new version, audit-logged).")
retention_cli.add_command(hold_cli)
retention_cli.add_command(policy_cli)


def _controller_exists(session: Session, controller_id: int | None) -> None:
    if controller_id is not None and session.get(Controller, controller_id) is None:
        raise click.UsageError(f"no controller {controller_id}")


@retention_cli.command("run")
@click.option("--dry-run", is_flag=True, help="Print what would be deleted or anonymised per category and controller, and what holds keep.")
@click.option("--controller", "controller_id", type=ID, help="Only this controller's data.")
@click.option("--category", type=click.Choice(CATEGORIES), help="Only this category.")
@click.option("--json", "as_json", is_flag=True, help="The dry run's lines as JSON.")
@click.option("--chunk", type=click.IntRange(1, 100_000), default=runner.CHUNK, show_default=True, help="Tickets (or records) per engine run.")
def retention_run(dry_run: bool, controller_id: int | None, category: str | None, as_json: bool, chunk: int) -> None:
    """Delete or anonymise what is past its period, in batches (Ctrl-C stops cleanly; a new run resumes a stopped or killed one)."""
    with db.session_scope() as session:
        _controller_exists(session, controller_id)
        lines = runner.preview(session, only_controller=controller_id, only_category=category, now=utcnow())
        if dry_run:
            # What ended holds kept from DSR erasures (and other runs' sources): the run releases it first.
            owed = release.due(session, only_controller=controller_id, now=utcnow()) if category is None else []
            if as_json:
                click.echo(json.dumps([line.as_dict() for line in lines] + [r.as_dict() for r in owed], indent=2))
                return
            for r in owed:
                click.echo(r.describe())
            for line in lines:
                held = ", ".join(f"{n} under {why}" for why, n in sorted(line.held.items())) or "none held"
                who = line.desk_label if line.controller_id is None else f"controller {line.controller_id}"
                policy = f"after {line.period_days} days, v{line.version} {line.source}"
                click.echo(f"{line.category}\t{who}\twould {line.action} {line.due} {line.unit} ({policy}); {held}")
            return

    # Batches a run takes, about: per chunk of due items one to start it, one for its plan, then one per engine batch
    # (whole tickets: purge.BATCH a batch; other records: the record stores' BATCH).
    def batches(line: runner.PreviewLine) -> int:
        items = line.due + sum(line.held.values())
        per_batch = purge.BATCH if line.category in TICKET_CATEGORIES else record_stores.BATCH
        return 2 * -(-items // chunk) + -(-items // per_batch)

    estimate = sum(batches(line) for line in lines) + len(lines) + 1
    bar = click.progressbar(length=estimate, label="retention run (batches)", show_pos=True, file=sys.stderr)
    try:
        with run_lock(current_app.config, db.engine), stop_on_ctrl_c("the retention run") as stop, bar:
            result = runner.execute(
                db.session_scope,
                only_controller=controller_id,
                only_category=category,
                chunk=chunk,
                by=operator("retention run"),
                clock=utcnow,
                should_stop=stop.is_set,
                on_batch=lambda _n: bar.update(1) if bar.pos < estimate - 1 else None,
            )
    except LockHeld:
        raise click.ClickException("another retention run is under way; nothing was changed") from None
    except KeyboardInterrupt:  # a second Ctrl-C, mid-batch: the last committed batch is where the next run resumes
        click.echo("\nstopped; run retention run again to resume", err=True)
        sys.exit(130)
    with db.session_scope() as session:
        row = runner.ledger(session, limit=1)[0]
        summary = runner.describe(row)
    resumed = " (resumed)" if result.resumed else ""
    if result.progress.stopped:
        click.echo(f"stopped: run {result.run_id}{resumed} after {result.progress.batches} batches; run retention run again to resume", err=True)
        sys.exit(130)
    click.echo(f"run {result.run_id}{resumed} {summary['state']}: {_totals(summary['counts'])}")


def _totals(counts: dict[str, dict[str, dict[str, Any]]]) -> str:
    parts = []
    for category, per in sorted(counts.items()):
        due = sum(c.get("due", 0) for c in per.values())
        changed = sum(c.get("changed", 0) for c in per.values())
        held = sum(c.get("held", 0) for c in per.values())
        reasons: dict[str, int] = {}
        for c in per.values():
            for why, n in (c.get("held_by") or {}).items():
                reasons[why] = reasons.get(why, 0) + int(n)
        by_hold = f" ({', '.join(f'{n} under {why}' for why, n in sorted(reasons.items()))})" if reasons else ""
        parts.append(f"{category} due {due}, rows changed {changed}, held {held}{by_hold}")
    return "; ".join(parts) or "nothing was due"


@retention_cli.command("policies")
@click.option("--controller", "controller_id", type=ID, help="The policies in force for this controller (default: desk-wide).")
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
def retention_policies(controller_id: int | None, as_json: bool) -> None:
    """Every category's policy in force: period, event, action, legal basis, version, and whether runs cover it yet."""
    with db.session_scope() as session:
        _controller_exists(session, controller_id)
        rows = [policies.effective(session, c, controller_id, now=utcnow()) for c in CATEGORIES]
    data = [
        {
            "category": p.category,
            "controller_id": p.controller_id,
            "period_days": p.period_days,
            "event": p.event,
            "action": p.action,
            "legal_basis": p.legal_basis,
            "version": p.version,
            "source": p.source,
            "covered": DEFAULTS[p.category].covered,
        }
        for p in rows
    ]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for d in data:
        covered = "" if d["covered"] else "  [not yet covered by runs]"
        click.echo(f"{d['category']}\t{d['period_days']} days after {d['event']}\t{d['action']}\tv{d['version']} {d['source']}{covered}\n  {d['legal_basis']}")


@policy_cli.command("set")
@click.argument("category", type=click.Choice(CATEGORIES))
@click.option("--days", type=click.IntRange(1), required=True, help="The period in days.")
@click.option("--action", type=click.Choice(ACTIONS), help="delete or anonymise (default: the policy's current action).")
@click.option("--basis", required=True, help="The legal basis text shown to the controller.")
@click.option("--controller", "controller_id", type=ID, help="An override for this controller (default: the desk-wide policy).")
def retention_policy_set(category: str, days: int, action: str | None, basis: str, controller_id: int | None) -> None:
    """Write the next version of a policy (within RETENTION_MAX_DAYS)."""
    with db.session_scope() as session:
        _controller_exists(session, controller_id)
        now = utcnow()
        current = policies.effective(session, category, controller_id, now=now)
        row = policies.change(
            session,
            category,
            controller_id=controller_id,
            period_days=days,
            action=action or current.action,
            legal_basis=basis,
            max_days=int(current_app.config["RETENTION_MAX_DAYS"]),
            by=operator("retention policy set"),
            now=now,
        )
        click.echo(f"{category} v{row.version}: {row.period_days} days, {row.action}")


@policy_cli.command("withdraw")
@click.argument("category", type=click.Choice(CATEGORIES))
@click.option("--controller", "controller_id", type=ID, required=True, help="The controller whose override ends.")
def retention_policy_withdraw(category: str, controller_id: int) -> None:
    """End a controller's override: a new version marked withdrawn (audit-logged); the desk-wide policy applies again."""
    with db.session_scope() as session:
        row = policies.withdraw(session, category, controller_id=controller_id, by=operator("retention policy withdraw"), now=utcnow())
        click.echo(f"{category} for controller {controller_id}: override withdrawn (v{row.version}); the desk-wide policy applies")


def _hold_dict(h: holds.RetentionHold) -> dict[str, object]:
    return {
        "id": h.id,
        "kind": h.kind,
        "controller_id": h.controller_id,
        "ticket_id": h.ticket_id,
        "basis": h.basis,
        "basis_text": h.basis_text,
        "placed_by": h.placed_by,
        "placed_at": h.placed_at.isoformat(),
        "until": h.until.isoformat() if h.until else None,
        "last_day": h.last_day.isoformat() if h.last_day else None,
        "lifted_at": h.lifted_at.isoformat() if h.lifted_at else None,
    }


@retention_cli.command("holds")
@click.option("--all", "include_ended", is_flag=True, help="Also lifted and ended holds.")
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
def retention_holds(include_ended: bool, as_json: bool) -> None:
    """The legal holds in force (the subject of a subject hold is not printed: it is personal data)."""
    with db.session_scope() as session:
        data = [_hold_dict(h) for h in holds.list_holds(session, include_ended=include_ended, now=utcnow())]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for d in data:
        targets = {"controller": f"controller {d['controller_id']}", "ticket": f"ticket {d['ticket_id']}"}
        target = targets.get(str(d["kind"]), f"a subject of controller {d['controller_id']}")
        end = f"lifted {str(d['lifted_at'])[:10]}" if d["lifted_at"] else f"through {d['last_day'] or 'until lifted'}"
        click.echo(f"hold {d['id']}\t{target}\t{d['basis']}\t{end}\tplaced by {d['placed_by']}\t{d['basis_text']}")
    if not data:
        click.echo("no legal holds in force")


_NAME = re.compile(r"^[\w.@-]{1,60}$")


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in this environment: --by is then required
        return ""


def _operator(name: str) -> Principal:
    """The operator who placed or lifted a hold, as `--by` names them (default: the OS login name)."""
    if not _NAME.match(name or ""):
        raise click.BadParameter("a login name of 1 to 60 letters, digits or . _ @ -", param_hint="--by")
    return Principal.system(f"operator:{name}")


def _ticket_id(session: Session, ref: str) -> int:
    """The ticket a reference (T-YYYY-NNNNNN) or id names; a usage error "no ticket REF" otherwise (never a database overflow)."""
    ticket = find_by_reference(session, ref, include_triage=True)
    if ticket is None and (ticket_id := id_value(ref)) is not None:
        ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        raise click.UsageError(f"no ticket {ref[:40]}")
    return ticket.id


@hold_cli.command("add")
@click.option("--controller", "controller_id", type=ID, help="Hold a controller's data (or, with --subject, the controller of the subject).")
@click.option("--ticket", "ticket_ref", help="Hold one ticket (T-YYYY-NNNNNN or its id).")
@click.option("--subject", "subject_email", help="Hold one subject's data within --controller (their email address).")
@click.option("--basis", required=True, help=f"One of {', '.join(HOLD_BASES)}, or free text (recorded as 'other').")
@click.option("--note", default="", help="The matter: case number, regulator's letter (no personal data).")
@click.option("--until", "until_day", help="The last day the hold keeps the data (YYYY-MM-DD, UTC).")
@click.option("--indefinite", is_flag=True, help="Until lifted (litigation or a regulator's request only).")
@click.option("--by", "by_name", default=_login_name, show_default="your login name", help="Who places the hold (recorded and shown).")
def retention_hold_add(
    controller_id: int | None,
    ticket_ref: str | None,
    subject_email: str | None,
    basis: str,
    note: str,
    until_day: str | None,
    indefinite: bool,
    by_name: str,
) -> None:
    """Place a legal hold: nothing it covers is deleted by retention, a DSR erasure or any other deletion run."""
    by = _operator(by_name)
    if (until_day is not None) == indefinite:
        raise click.UsageError("give exactly one of --until DATE and --indefinite")
    if sum(x is not None for x in (ticket_ref, subject_email)) > 1 or (ticket_ref is not None and controller_id is not None):
        raise click.UsageError("give one of --controller ID, --ticket REF, or --subject EMAIL --controller ID")
    if subject_email is not None and controller_id is None:
        raise click.UsageError("--subject needs --controller ID")
    if ticket_ref is None and controller_id is None:
        raise click.UsageError("give one of --controller ID, --ticket REF, or --subject EMAIL --controller ID")
    code, text = (basis, note) if basis in HOLD_BASES else ("other", " ".join(x for x in (basis, note) if x))
    with db.session_scope() as session:
        _controller_exists(session, controller_id)
        ticket_id = _ticket_id(session, ticket_ref) if ticket_ref is not None else None
        kind = "ticket" if ticket_id is not None else "subject" if subject_email is not None else "controller"
        hold = holds.place(
            session,
            kind=kind,
            basis=code,
            basis_text=text,
            controller_id=controller_id,
            ticket_id=ticket_id,
            subject_email=subject_email,
            until=None if indefinite else holds.end_of(str(until_day)),
            by=by,
            now=utcnow(),
        )
        click.echo(f"hold {hold.id} placed ({kind}, {code}, until {hold.until.date() - dt.timedelta(days=1) if hold.until else 'lifted'})")


@hold_cli.command("lift")
@click.argument("hold_id", type=ID)
@click.option("--by", "by_name", default=_login_name, show_default="your login name", help="Who lifts the hold (recorded and shown).")
def retention_hold_lift(hold_id: int, by_name: str) -> None:
    """Lift a hold: what it kept is due at once and the next run takes it."""
    by = _operator(by_name)
    with db.session_scope() as session:
        holds.lift(session, hold_id, by=by, now=utcnow())
    click.echo(f"hold {hold_id} lifted")


@retention_cli.command("runs")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="How many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
def retention_runs(limit: int, as_json: bool) -> None:
    """The ledger of retention runs: start, end, state, policy versions, counts per category and controller, errors."""
    with db.session_scope() as session:
        data = [runner.describe(r) for r in runner.ledger(session, limit=limit)]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for d in data:
        click.echo(f"run {d['id']}\t{d['state']}\t{d['started_at']} - {d['finished_at'] or '...'}\t{_totals(d['counts'])}\terrors {len(d['errors'])}")
    if not data:
        click.echo("no retention runs yet")
