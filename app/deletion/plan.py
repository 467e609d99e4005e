"""What a run covers, fixed before anything changes: its stores in order, and the plan (ids) of its scope.

The plan is taken once, as the run's first batch, and kept in its cursor:
later batches change the very identifiers the plan was found by (an erased
address no longer matches its blind index), and a resumed run must walk
the same set. A whole controller is not listed: its tickets are walked by
controller id.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.deletion.authorities import AuthorityHooks
from app.deletion.categories import RECORDS_STORE, plan_records
from app.deletion.messages import MESSAGES_STORE
from app.deletion.models import DeletionRun
from app.deletion.purge import ANONYMISE_STORE, DELETE_STORE
from app.deletion.records import OUTBOX_STORE, QUARANTINE_STORE, TICKETS_STORE
from app.deletion.stores import RunContext, Store
from app.deletion.subject import plan_subject, subject_tickets
from app.tickets.models import Message, Ticket


def _tickets_of(session: Session, message_ids: list[int]) -> set[int]:
    """The tickets of these messages (their outbox rows may quote the subject)."""
    return set(session.scalars(select(Message.ticket_id).where(Message.id.in_(message_ids or [0]))))


# The engine's own stores for each action, in the order they are walked (the authority's stores follow).
_STORES: dict[str, tuple[Store, ...]] = {
    "redact": (MESSAGES_STORE, TICKETS_STORE, OUTBOX_STORE, QUARANTINE_STORE),
    "rectify": (MESSAGES_STORE, TICKETS_STORE, OUTBOX_STORE),
    "delete": (DELETE_STORE,),
    "anonymise": (ANONYMISE_STORE,),
}
# A records-scope run has one store, whatever its action: its category's (app.deletion.categories).
_RECORD_STORES: tuple[Store, ...] = (RECORDS_STORE,)
# Which scopes each action supports today.
SUPPORTED = {
    "redact": ("subject",),
    "rectify": ("subject",),
    "delete": ("tickets", "controller", "records"),
    "anonymise": ("tickets", "controller", "records"),
}


def stores_for(run: DeletionRun, hooks: AuthorityHooks) -> list[Store]:
    """The run's stores in order: the engine's for its action, then its authority's own."""
    stores = [*(_RECORD_STORES if run.scope_kind == "records" else _STORES[run.action]), *hooks.stores]
    names = [s.name for s in stores]
    if len(set(names)) != len(names) or "plan" in names or "done" in names:
        raise ValueError(f"store names must be unique and not 'plan' or 'done': {names}")
    return stores


def phases(stores: list[Store]) -> list[str]:
    """The run's phases: the plan, each store, done."""
    return ["plan", *(s.name for s in stores), "done"]


def make_plan(ctx: RunContext, hooks: AuthorityHooks) -> None:
    """Fix the scope's ids in the cursor (`ctx.plan`) and note the counts in the report."""
    run, session = ctx.run, ctx.session
    ctx.plan.setdefault("related", {})
    if run.scope_kind == "subject":
        ctx.plan["ticket_ids"] = subject_tickets(ctx)
        hooks.plan(ctx)  # the authority's domain may add tickets, relations, keys and what the subject gave (learn)
        tickets = sorted({int(t) for t in ctx.plan["ticket_ids"]})
        own, mentions = plan_subject(ctx)
        in_tickets = set(session.scalars(select(Message.id).where(Message.ticket_id.in_(tickets or [0]))))
        ctx.plan["ticket_ids"] = tickets
        ctx.plan["own_ids"] = own
        ctx.plan["other_ids"] = sorted((set(own) | set(mentions)) - in_tickets)
        ctx.plan["related"]["ticket"] = sorted(set(tickets) | _tickets_of(session, ctx.plan["other_ids"]))
        ctx.report.plan(tickets=len(tickets), own_messages=len(own), other_messages=len(ctx.plan["other_ids"]))
        return
    if run.scope_kind == "records":
        plan_records(ctx)
        hooks.plan(ctx)
        return
    if run.scope_kind == "tickets":
        asked = sorted({int(t) for t in ctx.params.get("ticket_ids") or []})
        stmt = select(Ticket.id).where(Ticket.id.in_(asked or [0]))
        if run.controller_id is not None:
            stmt = stmt.where(Ticket.controller_id == run.controller_id)
        ctx.plan["ticket_ids"] = sorted(session.scalars(stmt))
        hooks.plan(ctx)
        ctx.report.plan(tickets=len(ctx.plan["ticket_ids"]), not_found=len(asked) - len(ctx.plan["ticket_ids"]))
        return
    hooks.plan(ctx)
    count = session.scalar(select(func.count()).select_from(Ticket).where(Ticket.controller_id == run.controller_id))
    ctx.report.plan(tickets=int(count or 0))
