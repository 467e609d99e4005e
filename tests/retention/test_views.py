"""The retention page: privacy officers see policies, holds, the preview, the ledger and the age chart, and place/lift holds; admins change policies."""

from __future__ import annotations

import datetime as dt

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.retention.models import RetentionHold
from app.retention.policies import effective
from tests.conftest import AuthActions
from tests.deletion.support import make_tickets
from tests.factories import make_controller
from tests.retention.support import close_at

LONG_AGO = dt.datetime(2020, 1, 1, 9, 0, tzinfo=dt.UTC)


def test_the_privacy_officer_sees_the_page_and_places_and_lifts_a_hold(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    controller = make_controller(session, name="Overdue Ltd")
    made = make_tickets(session, controller, 2, messages=1, now=LONG_AGO)
    close_at(session, made.ticket_ids[:1], LONG_AGO)
    session.commit()
    auth.login("privacy_officer")
    page = client.get("/retention/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for part in ("Stored tickets by age", "Policies", "Legal holds", "The next run", "Past runs", "closed_ticket_content", "Overdue Ltd"):
        assert part in html
    assert "Change a policy" not in html  # admins only
    # Place a hold on the controller
    placed = client.post("/retention/holds", data={"kind": "controller", "controller_id": str(controller.id), "basis": "litigation", "note": "case 9"})
    assert placed.status_code == 303
    hold = session.scalars(select(RetentionHold).order_by(RetentionHold.id.desc())).first()
    assert hold is not None and hold.controller_id == controller.id and hold.until is None
    assert f"hold {hold.id}: litigation" in client.get("/retention/").get_data(as_text=True)
    # A hold that needs an end date is refused back on the page
    refused = client.post("/retention/holds", data={"kind": "controller", "controller_id": str(controller.id), "basis": "accounting"}, follow_redirects=True)
    assert "needs an end date" in refused.get_data(as_text=True)
    # Lift it
    assert client.post(f"/retention/holds/{hold.id}/lift").status_code == 303
    session.refresh(hold)
    assert hold.lifted_at is not None


def test_the_admin_changes_a_policy(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    controller = make_controller(session)
    session.commit()
    auth.login("admin")
    assert "Change a policy" in client.get("/retention/").get_data(as_text=True)
    data = {"category": "requester_identity", "controller_id": str(controller.id), "period_days": "30", "action": "anonymise", "legal_basis": "contract"}
    assert client.post("/retention/policies", data=data).status_code == 303
    now = dt.datetime.now(dt.UTC)
    assert effective(session, "requester_identity", controller.id, now=now).period_days == 30
    too_long = {**data, "period_days": "99999"}
    assert "the period must be 1 to" in client.post("/retention/policies", data=too_long, follow_redirects=True).get_data(as_text=True)
