"""The audit service: events are chained, carry no personal data, and the auditor can page through them."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.audit.chain import GENESIS, event_hash
from app.principal import Principal

T0 = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)
STAFF = Principal.staff(7)


def test_record_appends_a_linked_event(session: Session) -> None:
    _, head = audit.chain_head(session)
    first = audit.record(
        session, by=STAFF, action="controller.create", target_type="controller", target_id=3, controller_id=3, details={"contacts": {"dsr": 2}}, now=T0
    )
    second = audit.record(
        session, by=Principal.system("keys rotate"), action="keys.rotate", target_type="keyring", details={"rewrapped": 4, "ok": True}, now=T0
    )

    assert first.prev_hash == head
    assert second.seq == first.seq + 1
    assert second.prev_hash == first.hash
    assert first.hash == event_hash(first.link())
    assert (first.actor_kind, first.actor_id, first.target_id) == ("staff", 7, "3")
    assert (second.actor_kind, second.actor_name) == ("system", "keys rotate")
    assert first.details == {"contacts": {"dsr": 2}}


def test_first_event_links_to_genesis(session: Session) -> None:
    if audit.chain_head(session)[0] == 0:
        event = audit.record(session, by=STAFF, action="a", target_type="t", now=T0)
        assert event.seq == 1 and event.prev_hash == GENESIS


@pytest.mark.parametrize(
    "details",
    [
        {"email": "jane@example.com"},
        {"note": "a free text sentence with spaces"},
        {"code": "x" * 65},
        {"ratio": 0.5},
        {"when": T0},
        {"Name": 1},
        {"ids": ["ok", "jane@example.com"]},
        {"a": {"b": {"c": 1}}},
    ],
)
def test_details_other_than_ids_counts_codes_are_refused(session: Session, details: dict[str, object]) -> None:
    with pytest.raises(audit.InvalidAuditEvent):
        audit.record(session, by=STAFF, action="x", target_type="t", details=details, now=T0)


def test_controller_principal_email_is_never_stored(session: Session) -> None:
    event = audit.record(
        session, by=Principal(kind="controller", id=5, name="dpo@acme.example"), action="instruction.receive", target_type="instruction", now=T0
    )
    assert (event.actor_kind, event.actor_id, event.actor_name) == ("controller", 5, None)
    assert "@" not in event.details_json


def test_bad_action_or_target_refused(session: Session) -> None:
    with pytest.raises(audit.InvalidAuditEvent):
        audit.record(session, by=STAFF, action="send mail to jane@example.com", target_type="t", now=T0)
    with pytest.raises(audit.InvalidAuditEvent):
        audit.record(session, by=STAFF, action="a", target_type="t", target_id="jane@example.com", now=T0)
    with pytest.raises(audit.InvalidAuditEvent):
        audit.record(session, by=STAFF, action="a", target_type="t", now=T0.replace(tzinfo=None))


def test_search_filters_and_pages_newest_first(session: Session) -> None:
    for i in range(5):
        audit.record(
            session, by=STAFF, action="test.page", target_type="controller", target_id=100 + i % 2, controller_id=900 + i % 2, now=T0 + dt.timedelta(days=i)
        )
    audit.record(session, by=STAFF, action="test.other", target_type="controller", target_id=100, controller_id=900, now=T0)

    page = audit.search_events(session, audit.EventFilter(action="test.page"), limit=2)
    assert [e.occurred_at for e in page.events] == [T0 + dt.timedelta(days=4), T0 + dt.timedelta(days=3)]
    assert page.next_before is not None
    rest = audit.search_events(session, audit.EventFilter(action="test.page"), before=page.next_before, limit=10)
    assert len(rest.events) == 3 and rest.next_before is None

    by_controller = audit.search_events(session, audit.EventFilter(action="test.page", controller_id=901))
    assert {e.target_id for e in by_controller.events} == {"101"}
    by_target = audit.search_events(session, audit.EventFilter(target_type="controller", target_id=100, action="test.other"))
    assert len(by_target.events) == 1 and by_target.events[0].actor == "staff:7"
    dated = audit.search_events(session, audit.EventFilter(action="test.page", since=T0 + dt.timedelta(days=1), until=T0 + dt.timedelta(days=3)))
    assert len(dated.events) == 2
    scoped = audit.search_events(session, audit.EventFilter(action="test.page"), controller_scope=[900])
    assert {e.controller_id for e in scoped.events} == {900}
    assert "test.page" in audit.list_actions(session)
