"""Create, change and list controllers. Services flush; the caller commits."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from app.addresses import InvalidAddress, normalise_domain, normalise_email
from app.audit.service import record
from app.controllers.models import (
    STATUSES,
    TERMINATION_OPTIONS,
    Controller,
    ControllerContact,
    ControllerDomain,
    ControllerIdentifier,
)
from app.crypto.cipher import DecryptionError, key_id_of
from app.crypto.keys import preload_keys
from app.exceptions import DeskError, NotFound, Refused
from app.principal import Principal

_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$")


class ControllerError(DeskError):
    """Base of the controller service's errors."""


class ControllerNotFound(ControllerError, NotFound):
    """No controller with that id."""


class InvalidController(ControllerError, Refused):
    """Input refused; `errors` maps a field name to a message safe to show."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass
class ControllerInput:
    """What a form or the CLI may set on a controller."""

    name: str
    dsr_contacts: Sequence[str]
    breach_contacts: Sequence[str] = ()
    subprocessor_contacts: Sequence[str] = ()
    domains: Sequence[str] = ()
    identifiers: Sequence[str] = ()
    status: str = "active"
    terminated_on: dt.date | None = None
    termination_option: str | None = None


@dataclass
class _Clean:
    name: str
    contacts: dict[str, list[str]] = field(default_factory=dict)
    domains: list[str] = field(default_factory=list)
    identifiers: list[str] = field(default_factory=list)


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _validate(session: Session, data: ControllerInput, *, controller_id: int | None) -> _Clean:
    errors: dict[str, str] = {}
    name = " ".join((data.name or "").split())
    if not name:
        errors["name"] = "a name is required"
    elif len(name) > 200:
        errors["name"] = "the name is longer than 200 characters"
    else:
        clash = session.scalar(select(Controller.id).where(func.lower(Controller.name) == name.lower()))
        if clash is not None and clash != controller_id:
            errors["name"] = "another controller already has this name"
    clean = _Clean(name=name)
    for kind, raw in (("dsr", data.dsr_contacts), ("breach", data.breach_contacts), ("subprocessor", data.subprocessor_contacts)):
        try:
            clean.contacts[kind] = _unique(normalise_email(v) for v in raw if v.strip())
        except InvalidAddress as exc:
            errors[f"{kind}_contacts"] = str(exc)
    if not errors.get("dsr_contacts") and not clean.contacts.get("dsr"):
        errors["dsr_contacts"] = "at least one DSR contact address is required"
    try:
        clean.domains = _unique(normalise_domain(v) for v in data.domains if v.strip())
    except InvalidAddress as exc:
        errors["domains"] = str(exc)
    for domain in clean.domains:
        owner = session.scalar(select(ControllerDomain.controller_id).where(ControllerDomain.domain == domain))
        if owner is not None and owner != controller_id:
            errors["domains"] = f"the domain {domain} already routes to another controller"
    identifiers = _unique(v.strip() for v in data.identifiers if v.strip())
    bad = [v for v in identifiers if not _IDENTIFIER.match(v)]
    if bad:
        errors["identifiers"] = "identifiers are letters, digits and . _ : / - (at most 100 characters)"
    for identifier in identifiers:
        owner = session.scalar(select(ControllerIdentifier.controller_id).where(ControllerIdentifier.identifier == identifier))
        if owner is not None and owner != controller_id:
            errors["identifiers"] = f"the identifier {identifier} already routes to another controller"
    clean.identifiers = identifiers
    if data.status not in STATUSES:
        errors["status"] = "status must be active or terminated"
    elif data.status == "terminated":
        if data.terminated_on is None:
            errors["terminated_on"] = "a terminated controller needs its termination date"
        if data.termination_option not in TERMINATION_OPTIONS:
            errors["termination_option"] = "choose whether the data is returned or deleted (WECO §8, Pexgle §13)"
    elif data.terminated_on is not None:
        errors["terminated_on"] = "only a terminated controller has a termination date"
    if errors:
        raise InvalidController(errors)
    return clean


def _apply(controller: Controller, clean: _Clean, data: ControllerInput) -> None:
    controller.name = clean.name
    controller.status = data.status
    controller.terminated_on = data.terminated_on if data.status == "terminated" else None
    controller.termination_option = data.termination_option if data.status == "terminated" else None
    wanted = {(kind, email) for kind, emails in clean.contacts.items() for email in emails}
    controller.contacts = [c for c in controller.contacts if (c.kind, c.email) in wanted]
    have = {(c.kind, c.email) for c in controller.contacts}
    for kind, emails in clean.contacts.items():
        controller.contacts.extend(ControllerContact(kind=kind, email=e) for e in emails if (kind, e) not in have)
    keep = {d.domain: d for d in controller.domains}
    controller.domains = [keep.get(d) or ControllerDomain(domain=d) for d in clean.domains]
    keep_ids = {i.identifier: i for i in controller.identifiers}
    controller.identifiers = [keep_ids.get(i) or ControllerIdentifier(identifier=i) for i in clean.identifiers]


def _audit_counts(controller: Controller) -> dict[str, object]:
    # The audit log takes counts, never the addresses themselves (personal data of the representatives).
    contacts = {kind: sum(1 for c in controller.contacts if c.kind == kind) for kind in ("dsr", "breach", "subprocessor")}
    return {"contacts": contacts, "domains": len(controller.domains), "identifiers": len(controller.identifiers)}


def _audit_snapshot(controller: Controller) -> dict[str, object]:
    # Compared in memory only, to name which fields changed; never stored.
    return {
        "name": controller.name,
        "status": controller.status,
        "termination": (controller.terminated_on, controller.termination_option),
        "contacts": sorted((c.kind, c.email) for c in controller.contacts),
        "domains": sorted(d.domain for d in controller.domains),
        "identifiers": sorted(i.identifier for i in controller.identifiers),
    }


def create_controller(session: Session, data: ControllerInput, *, by: Principal, now: dt.datetime) -> Controller:
    """Register a client company; the DSR contact is mandatory (Pexgle §11.3)."""
    clean = _validate(session, data, controller_id=None)
    controller = Controller(created_at=now, updated_at=now)
    _apply(controller, clean, data)
    session.add(controller)
    session.flush()
    details = _audit_counts(controller)
    record(session, by=by, action="controller.create", target_type="controller", target_id=controller.id, controller_id=controller.id, details=details, now=now)
    return controller


def update_controller(session: Session, controller_id: int, data: ControllerInput, *, by: Principal, now: dt.datetime) -> Controller:
    """Change a controller's name, contacts, routing or status."""
    controller = get_controller(session, controller_id)
    clean = _validate(session, data, controller_id=controller.id)
    before = _audit_snapshot(controller)
    _apply(controller, clean, data)
    controller.updated_at = now
    session.flush()
    after = _audit_snapshot(controller)
    changed = sorted(k for k in after if after[k] != before[k])
    details = {**_audit_counts(controller), "changed": changed, "status": controller.status}
    record(session, by=by, action="controller.update", target_type="controller", target_id=controller.id, controller_id=controller.id, details=details, now=now)
    return controller


def get_controller(session: Session, controller_id: int, *, only_ids: Collection[int] | None = None) -> Controller:
    """One controller with its contacts; ControllerNotFound when there is none or it is outside `only_ids` (a staff member's scope)."""
    controller = session.get(Controller, controller_id)
    if controller is None or (only_ids is not None and controller_id not in only_ids):
        raise ControllerNotFound(f"no controller {controller_id}")
    return controller


def list_controllers(session: Session, *, offset: int = 0, limit: int | None = None, only_ids: Collection[int] | None = None) -> list[Controller]:
    """Controllers by name, with contacts, domains and identifiers loaded; `only_ids` limits to a staff member's scope."""
    query = (
        select(Controller)
        .options(selectinload(Controller.contacts), selectinload(Controller.domains), selectinload(Controller.identifiers))
        .order_by(Controller.name, Controller.id)
        .offset(offset)
    )
    if only_ids is not None:
        query = query.where(Controller.id.in_(list(only_ids)))
    if limit is not None:
        query = query.limit(limit)
    controllers = list(session.scalars(query))
    # Each controller has its own data key: unwrap a page's keys with one query,
    # not one query per row when the template decrypts the addresses (N+1).
    preload_keys(session, _key_ids(c.email_ct for controller in controllers for c in controller.contacts))
    return controllers


def _key_ids(blobs: Iterable[bytes]) -> set[int]:
    wanted: set[int] = set()
    for blob in blobs:
        try:
            wanted.add(key_id_of(blob))
        except DecryptionError:
            continue  # reading the address reports it
    return wanted


class ControllerName(NamedTuple):
    """A controller as a choice or a link: id and name."""

    id: int
    name: str


def controller_names(session: Session, *, only_ids: Collection[int] | None = None) -> list[ControllerName]:
    """Ids and names by name, in one statement (choices and link lists: no contacts, no keys)."""
    query = select(Controller.id, Controller.name).order_by(Controller.name, Controller.id)
    if only_ids is not None:
        query = query.where(Controller.id.in_(list(only_ids)))
    return [ControllerName(row.id, row.name) for row in session.execute(query)]


UNREADABLE = "(unreadable: data key shredded)"


@dataclass(frozen=True)
class ControllerRow:
    """One line of the controllers list: what the page shows, the DSR contacts decrypted."""

    id: int
    name: str
    status: str
    terminated_on: dt.date | None
    dsr_contacts: list[str]
    domains: list[str]


@dataclass(frozen=True)
class ControllerPage:
    """A page of the controllers list and how many controllers there are in all (within the scope)."""

    rows: list[ControllerRow]
    total: int


def list_page(session: Session, *, offset: int, limit: int, only_ids: Collection[int] | None = None) -> ControllerPage:
    """A page of the list by name with its total: three statements however long the page (rows, contacts, their keys)."""
    # The total rides along as a window count; the domains as one aggregated string per row.
    domains = select(func.aggregate_strings(ControllerDomain.domain, " ")).where(ControllerDomain.controller_id == Controller.id).scalar_subquery()
    query = select(Controller.id, Controller.name, Controller.status, Controller.terminated_on, domains.label("domains"), func.count().over().label("total"))
    if only_ids is not None:
        query = query.where(Controller.id.in_(list(only_ids)))
    rows = session.execute(query.order_by(Controller.name, Controller.id).offset(offset).limit(limit)).all()
    if not rows:
        return ControllerPage([], count_controllers(session, only_ids=only_ids) if offset else 0)
    contacts: dict[int, list[str]] = {row.id: [] for row in rows}
    found = session.execute(
        select(ControllerContact.controller_id, ControllerContact.email_ct, ControllerContact.row_uid)
        .where(ControllerContact.controller_id.in_(list(contacts)), ControllerContact.kind == "dsr")
        .order_by(ControllerContact.id)
    ).all()
    preload_keys(session, _key_ids(c.email_ct for c in found))
    for contact in found:
        try:
            email = ControllerContact.email.decrypt(session, contact.email_ct, row_uid=contact.row_uid)
        except DecryptionError:
            email = UNREADABLE  # a terminated controller's shredded key: the row still lists
        contacts[contact.controller_id].append(email)
    return ControllerPage(
        [ControllerRow(r.id, r.name, r.status, r.terminated_on, contacts[r.id], sorted((r.domains or "").split())) for r in rows],
        int(rows[0].total),
    )


def count_controllers(session: Session, *, only_ids: Collection[int] | None = None) -> int:
    """How many controllers are registered (within `only_ids` when given)."""
    query = select(func.count()).select_from(Controller)
    if only_ids is not None:
        query = query.where(Controller.id.in_(list(only_ids)))
    return session.scalar(query) or 0


def controller_as_dict(controller: Controller) -> dict[str, object]:
    """The machine-readable form used by `controllers list --json`."""
    return {
        "id": controller.id,
        "name": controller.name,
        "status": controller.status,
        "terminated_on": controller.terminated_on.isoformat() if controller.terminated_on else None,
        "termination_option": controller.termination_option,
        "dsr_contacts": controller.contact_emails("dsr"),
        "breach_contacts": controller.contact_emails("breach"),
        "subprocessor_contacts": controller.contact_emails("subprocessor"),
        "domains": [d.domain for d in controller.domains],
        "identifiers": [i.identifier for i in controller.identifiers],
    }
