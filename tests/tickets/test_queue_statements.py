"""The staff queue page is served with a fixed, small number of SQL statements (issue 5 item 10)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, update
from sqlalchemy.orm import Session

from app.crypto.keys import data_keys, owner_of, remembered
from app.db import utcnow
from app.extensions import db
from app.subject_data.models import RestrictedTicket, Restriction
from app.subject_data.restrict import restricted_flag, restricted_ticket_ids
from app.tickets import queue as tickets
from tests.conftest import AuthActions
from tests.factories import make_controller
from tests.tickets.test_ui import make_ticket

# Transaction control, not work: the test fixture turns every commit into a savepoint,
# and SQLite's BEGIN IMMEDIATE is sent as a statement (Postgres sends BEGIN implicitly).
_CONTROL = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT", "BEGIN")


@contextmanager
def statements(app: Flask) -> Iterator[list[str]]:
    """Every SQL statement sent on the app's engine inside the block (transaction control left out)."""
    seen: list[str] = []
    engine = db.state(app).engine

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().upper().startswith(_CONTROL):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_queue_page_costs_two_statements(app: Flask, client: FlaskClient, auth: AuthActions, session: Session) -> None:
    controller = make_controller(session)
    for n in range(60):
        make_ticket(session, controller, email=f"subject{n}@example.org", subject=f"Question {n}")
    session.flush()
    auth.login("agent", controllers=[controller])
    client.get(f"/tickets/queue/{controller.id}")  # warm: the process has seen this controller's key once

    with statements(app) as seen:
        page = client.get(f"/tickets/queue/{controller.id}")

    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Question 59" in html and "subject59@example.org" in html and "older" in html  # 50 decrypted rows and a next page
    # 1. the gate: the staff session row joined with its user and the user's controllers
    #    (last_seen_at is written at most once a minute, so no UPDATE here);
    # 2. the controller: an unknown one is a 404, and the page names it (issue 16);
    # 3. the page: 51 queue rows, each with its restriction flag (EXISTS) and, once, the check
    #    that the data keys this process remembers for the controller are still live.
    # No data_keys query: the keys come from the process, checked by statement 3. The header's
    # name comes from the gate's row; assignees' names, when any, cost one statement for the whole page.
    assert len(seen) == 3, seen
    assert seen[0].lstrip().startswith("SELECT") and "staff_sessions" in seen[0] and "user_controllers" in seen[0]
    assert "FROM controllers" in seen[1] and "tickets" not in seen[1]
    assert "tickets" in seen[2] and "subject_restricted_tickets" in seen[2] and "data_keys" in seen[2]


def test_a_key_shredded_by_another_process_is_not_used_from_the_process_cache(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    controller = make_controller(session)
    make_ticket(session, controller, email="subject@example.org", subject="Secret question")
    session.flush()
    auth.login("agent", controllers=[controller])
    assert "Secret question" in client.get(f"/tickets/queue/{controller.id}").get_data(as_text=True)
    # Another process shreds the controller's keys: a plain UPDATE, nothing in this process is told.
    shredded = {"state": "shredded", "wrapped_key": None, "wrapped_index_key": None, "master_version": None}
    session.execute(update(data_keys).where(data_keys.c.owner == owner_of(controller.id)).values(**shredded))
    session.flush()
    # The page does not decrypt with the key it remembered: each value reads as unreadable (crypto-shredded), none of it shown.
    response = client.get(f"/tickets/queue/{controller.id}")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "unreadable: this controller&#39;s key was destroyed (crypto-shredded)" in page
    assert "Secret question" not in page and "subject@example.org" not in page
    assert remembered(session, owner_of(controller.id)) == {}


def test_the_queue_masks_tickets_under_either_restriction_rule(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    controller = make_controller(session)
    listed = make_ticket(session, controller, email="listed@example.org", subject="Listed subject")
    later = make_ticket(session, controller, email="later@example.org", subject="Later subject")
    lifted = make_ticket(session, controller, email="lifted@example.org", subject="Lifted subject")
    free = make_ticket(session, controller, email="free@example.org", subject="Free subject")
    session.flush()
    now = utcnow()
    active = Restriction(controller_id=controller.id, kind="restriction", instruction_id=1, created_at=now, email_bidx=later.requester_email_bidx)
    gone = Restriction(controller_id=controller.id, kind="objection", instruction_id=2, created_at=now, lifted_at=now)
    session.add_all([active, gone])
    session.flush()
    session.add_all([RestrictedTicket(restriction_id=active.id, ticket_id=listed.id), RestrictedTicket(restriction_id=gone.id, ticket_id=lifted.id)])
    session.flush()
    page = tickets.queue(session, controller_id=controller.id, restricted=restricted_flag())
    assert page.restricted == {listed.id, later.id} == restricted_ticket_ids(session, [t.id for t in page.rows])
    # A masked ticket's personal data is not even decrypted for the list; the others are.
    shown = {row.id: (row.subject, row.requester_email) for row in page.rows}
    assert shown[listed.id] == shown[later.id] == (None, None)
    assert shown[lifted.id] == ("Lifted subject", "lifted@example.org") and shown[free.id] == ("Free subject", "free@example.org")
    auth.login("agent", controllers=[controller])
    html = client.get(f"/tickets/queue/{controller.id}").get_data(as_text=True)
    assert "Listed subject" not in html and "Later subject" not in html and "later@example.org" not in html
    assert "Lifted subject" in html and "Free subject" in html and html.count("restricted</span>") == 2
    assert all(t.reference in html for t in (listed, later, lifted, free))
