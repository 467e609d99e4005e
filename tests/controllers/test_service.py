"""The controllers registry: validated input, nothing saved on a refusal."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.controllers import service
from app.controllers.models import Controller, ControllerContact
from app.db import utcnow
from tests.factories import TEST_PRINCIPAL, make_controller


def count(session: Session, model: type) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def test_create_normalises_and_stores_contacts_domains_identifiers(session: Session) -> None:
    c = make_controller(
        session,
        name="  Acme   Corp ",
        dsr_contacts=["DPO@Acme.EXAMPLE", "dpo@acme.example"],
        breach_contacts=["sec@acme.example"],
        domains=["@Acme.Example", "mail.acme.example."],
        identifiers=["ACME-1"],
    )
    assert c.name == "Acme Corp"
    assert c.contact_emails("dsr") == ["dpo@acme.example"]
    assert c.contact_emails("breach") == ["sec@acme.example"]
    assert [d.domain for d in c.domains] == ["acme.example", "mail.acme.example"]
    assert service.controller_as_dict(c)["identifiers"] == ["ACME-1"]


@pytest.mark.parametrize(
    ("field", "kw"),
    [
        ("dsr_contacts", {"dsr_contacts": ["not-an-address"]}),
        ("dsr_contacts", {"dsr_contacts": []}),
        ("breach_contacts", {"breach_contacts": ["a@b@c"]}),
        ("domains", {"domains": ["no spaces.example"]}),
        ("identifiers", {"identifiers": ["bad id!"]}),
        ("name", {"name": "   "}),
        ("terminated_on", {"status": "terminated", "termination_option": "delete"}),
        ("termination_option", {"status": "terminated", "terminated_on": dt.date(2026, 1, 1)}),
        ("status", {"status": "paused"}),
    ],
)
def test_bad_input_is_a_clear_error_and_saves_nothing(session: Session, field: str, kw: dict) -> None:
    before = (count(session, Controller), count(session, ControllerContact))
    with pytest.raises(service.InvalidController) as info:
        make_controller(session, **kw)
    assert field in info.value.errors
    assert (count(session, Controller), count(session, ControllerContact)) == before


def test_names_domains_and_identifiers_are_unique_across_controllers(session: Session) -> None:
    make_controller(session, name="Unique Co", domains=["unique.example"], identifiers=["U-1"])
    with pytest.raises(service.InvalidController) as info:
        make_controller(session, name="unique co", domains=["unique.example"], identifiers=["U-1"])
    assert set(info.value.errors) == {"name", "domains", "identifiers"}


def test_update_replaces_lists_and_terminates(session: Session) -> None:
    c = make_controller(session, breach_contacts=["old@x.example"])
    data = service.ControllerInput(
        name=c.name,
        dsr_contacts=["new@x.example"],
        breach_contacts=[],
        status="terminated",
        terminated_on=dt.date(2026, 12, 31),
        termination_option="return",
    )
    service.update_controller(session, c.id, data, by=TEST_PRINCIPAL, now=utcnow())
    session.expire_all()
    again = service.get_controller(session, c.id)
    assert again.contact_emails("dsr") == ["new@x.example"]
    assert again.contact_emails("breach") == []
    assert (again.status, again.terminated_on, again.termination_option) == ("terminated", dt.date(2026, 12, 31), "return")


def test_unknown_controller_is_not_found(session: Session) -> None:
    with pytest.raises(service.ControllerNotFound):
        service.get_controller(session, 987654)
