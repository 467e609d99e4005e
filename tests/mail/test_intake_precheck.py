"""A handler's precheck (app.mail.intake): a SQL boolean the ingest reads beside a statement it runs anyway; false
means the handler (an observer or a claimer) has nothing to do, so `offer` skips it; without a value it is asked as always."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from app.mail.intake import Inbound, IntakeRegistry
from app.mail.parse import parse_mail
from app.principal import Principal
from app.tickets import service as tickets
from app.tickets.models import Ticket
from tests.mail.conftest import build

BY = Principal.system("tests")
NOW = dt.datetime(2026, 11, 16, 12, 0, tzinfo=dt.UTC)


def _inbound(session: Session, prechecked: dict[str, bool] | None) -> Inbound:
    ticket = tickets.create_ticket(session, controller_id=None, requester_name="R", requester_email="r@example.org", subject="S", by=BY, now=NOW)
    message = tickets.add_message(session, ticket, tickets.MessageInput(direction="inbound", body_text="hello"), by=BY, now=NOW)
    return Inbound(ticket, message, parse_mail(build(), attachment_max_bytes=1_000_000), b"", True, None, "support@x.example", "privacy@x.example", prechecked)


def test_an_observer_whose_precheck_was_false_is_not_asked(session: Session) -> None:
    asked: list[str] = []
    registry = IntakeRegistry()
    registry.add("t.watch", lambda _s, _i, **_k: asked.append("watch") or "ignored", observer=True, precheck=exists(select(Ticket.id)))
    registry.add("t.claim", lambda _s, _i, **_k: asked.append("claim") or "claimed")
    checks = registry.prechecks()
    assert list(checks) == ["t.watch"]
    # The ingest selects the labelled column beside its own statement; here alone.
    assert session.execute(select(*checks.values())).one()._mapping[checks["t.watch"].name] is False  # no ticket yet
    for prechecked, expected in (
        ({"t.watch": False}, ["claim"]),
        ({"t.watch": True}, ["watch", "claim"]),
        (None, ["watch", "claim"]),
        ({}, ["watch", "claim"]),
    ):
        asked.clear()
        claim = registry.offer(session, _inbound(session, prechecked), by=BY, now=NOW)
        assert claim is not None and claim.handler == "t.claim"  # an observer never claims, skipped or not
        assert asked == expected, prechecked
    assert session.execute(select(*checks.values())).scalar_one() is True


def test_a_claimer_whose_precheck_was_false_is_not_asked_and_the_next_handler_is(session: Session) -> None:
    # A claimer's precheck (the DSR instruction handler's: no forward ever sent) is false when it has nothing to claim.
    asked: list[str] = []
    registry = IntakeRegistry()
    registry.add("t.first", lambda _s, _i, **_k: asked.append("first") or "first", precheck=exists(select(Ticket.id)))
    registry.add("t.second", lambda _s, _i, **_k: asked.append("second") or "second")
    for prechecked, expected in (({"t.first": False}, "t.second"), ({"t.first": True}, "t.first"), (None, "t.first")):
        asked.clear()
        claim = registry.offer(session, _inbound(session, prechecked), by=BY, now=NOW)
        assert claim is not None and claim.handler == expected and asked == [expected.removeprefix("t.")], prechecked
