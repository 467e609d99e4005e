"""A new request's reference, DSR-<year>-<id>: on Postgres set in the INSERT by the database (migration 0026), elsewhere after it."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import event, insert, select
from sqlalchemy.orm import Session

from app.dsr.models import Dsr
from app.dsr.requests import DsrInput, create_dsr, format_reference
from tests.factories import TEST_PRINCIPAL

NOW = dt.datetime(2026, 11, 16, 12, 0, tzinfo=dt.UTC)


def _create(session: Session, received_at: dt.datetime) -> tuple[Dsr, list[str]]:
    seen: list[str] = []
    listen = event.listens_for(session.connection(), "before_cursor_execute")(lambda *a: seen.append(" ".join(a[2].split()[:3])))
    data = DsrInput(types=["access"], subject_email="pat@mail.example", request_text="a copy of my data")
    dsr = create_dsr(session, data, source="privacy_address", received_at=received_at, ticket=None, by=TEST_PRINCIPAL, now=NOW)
    event.remove(session.connection(), "before_cursor_execute", listen)
    return dsr, seen


def test_a_new_request_has_its_reference_from_its_year_and_id(session: Session) -> None:
    dsr, seen = _create(session, NOW)
    assert dsr.reference == format_reference(NOW, dsr.id) == f"DSR-2026-{dsr.id:06d}"
    session.expire(dsr)
    assert session.scalar(select(Dsr.reference).where(Dsr.id == dsr.id)) == format_reference(NOW, dsr.id)
    updates = [s for s in seen if s.startswith("UPDATE dsrs")]
    # Postgres: the INSERT returned it (one statement); SQLite updates the row once it knows the id.
    assert updates == ([] if session.get_bind().dialect.name == "postgresql" else ["UPDATE dsrs SET"])


def test_a_time_given_in_another_zone_keeps_the_year_the_desk_writes(session: Session) -> None:
    # 23:30 on 31 December at UTC-2 is already 2027 in UTC: the desk's reference (its year) is kept, as before.
    received = dt.datetime(2026, 12, 31, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-2)))
    dsr, _seen = _create(session, received)
    session.flush()
    session.expire(dsr)
    assert session.scalar(select(Dsr.reference).where(Dsr.id == dsr.id)) == format_reference(received, dsr.id) == f"DSR-2026-{dsr.id:06d}"


def test_the_database_writes_the_same_reference_as_the_desk_for_any_id(session: Session) -> None:
    if session.get_bind().dialect.name != "postgresql":
        return  # SQLite has no trigger: create_dsr writes it (the tests above)
    for dsr_id in (7, 99_999, 123_456, 1_234_567):
        at = NOW.replace(year=2031, month=12, day=31, hour=23, minute=59) if dsr_id == 7 else NOW
        values = {"id": dsr_id, "types": [], "source": "staff", "received_at": at, "due_at": at, "created_at": at, "updated_at": at}
        made = session.execute(insert(Dsr).values(**values).returning(Dsr.reference)).scalar_one()
        assert made == format_reference(at, dsr_id)
    explicit = {**values, "id": 42, "reference": "DSR-1999-000042"}
    kept = session.execute(insert(Dsr).values(**explicit).returning(Dsr.reference))
    assert kept.scalar_one() == "DSR-1999-000042"  # a reference given explicitly is kept
