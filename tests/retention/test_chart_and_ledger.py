"""The age chart counts only what a run would still act on, held tickets apart; the ledger says which hold kept what (issue 14 review)."""

from __future__ import annotations

import datetime as dt
import json
import re

from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy.orm import Session

from app.db import utcnow
from app.retention import holds
from app.tickets.models import Ticket
from tests.conftest import AuthActions
from tests.deletion.support import make_tickets
from tests.factories import make_controller
from tests.retention.support import SYSTEM, close_at, run_now


def _row(page: str, name: str) -> list[str]:
    """The chart table's cells for one controller: open, nothing due, held, identity due, content due."""
    found = re.search(rf"<tr><td>{re.escape(name)}</td>((?:<td>\d+</td>)+)</tr>", page)
    assert found, page
    return re.findall(r"<td>(\d+)</td>", found.group(1))


def test_the_chart_counts_what_a_run_would_act_on_and_held_tickets_apart(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    controller = make_controller(session, name="Chart Ltd")
    now = utcnow()
    made = make_tickets(session, controller, 7, messages=1, now=now - dt.timedelta(days=800))
    t = made.ticket_ids
    close_at(session, t[0:3], now - dt.timedelta(days=400))  # content past its period: a run deletes them ...
    holds.place(session, kind="ticket", ticket_id=t[2], basis="litigation", basis_text="case 1", until=None, by=SYSTEM, now=now)  # ... but not this one
    close_at(session, t[3:5], now - dt.timedelta(days=200))  # identity past its period ...
    anonymised = session.get(Ticket, t[4])
    assert anonymised is not None
    anonymised.requester_email_ct = anonymised.requester_name_ct = anonymised.requester_email_bidx = None  # ... this one done already
    close_at(session, t[5:6], now - dt.timedelta(days=10))  # within both periods
    session.commit()  # t[6] stays open
    auth.login("privacy_officer")
    page = client.get("/retention/").get_data(as_text=True)
    assert "due but under a legal hold" in page
    # open 1; nothing due 2 (within, and already anonymised); held 1; identity due 1; content due 2
    assert _row(page, "Chart Ltd") == ["1", "2", "1", "1", "2"]


def test_the_ledger_says_which_hold_kept_what(runner: FlaskCliRunner, client: FlaskClient, auth: AuthActions, session: Session) -> None:
    controller = make_controller(session, name="Ledger Ltd")
    now = utcnow()
    made = make_tickets(session, controller, 4, messages=1, now=now - dt.timedelta(days=800))
    close_at(session, made.ticket_ids, now - dt.timedelta(days=400))
    first = holds.place(session, kind="ticket", ticket_id=made.ticket_ids[0], basis="litigation", basis_text="case 1", until=None, by=SYSTEM, now=now)
    second = holds.place(
        session,
        kind="subject",
        controller_id=controller.id,
        subject_email="requester1@customer.example",
        basis="accounting",
        basis_text="",
        until=now + dt.timedelta(days=30),
        by=SYSTEM,
        now=now,
    )
    session.commit()
    run_now(session, now, only_category="closed_ticket_content")
    session.commit()
    result = runner.invoke(args=["retention", "runs", "--json"])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.output)[0]["counts"]["closed_ticket_content"][str(controller.id)]
    assert counts["held"] == 2
    assert counts["held_by"] == {f"hold {first.id}: litigation": 1, f"hold {second.id}: accounting": 1}
    text = runner.invoke(args=["retention", "runs"]).output
    assert f"1 under hold {first.id}: litigation" in text and f"1 under hold {second.id}: accounting" in text
    auth.login("privacy_officer")
    page = client.get("/retention/").get_data(as_text=True)
    past = page.split("Past runs")[1]
    assert f"hold {first.id}: litigation: 1" in past and f"hold {second.id}: accounting: 1" in past
