"""`demo seed`: fictional controllers (and, as features land, staff and tickets)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import User
from app.auth.onboarding import issue_enrolment_code
from app.auth.service import AuthPolicy, create_user, random_password
from app.controllers.models import Controller
from app.controllers.service import ControllerInput, create_controller
from app.principal import Principal

DEMO_CONTROLLERS = [
    ControllerInput(
        name="WECO Retail GmbH",
        dsr_contacts=["privacy@weco.example"],
        breach_contacts=["security@weco.example"],
        subprocessor_contacts=["legal@weco.example"],
        domains=["weco.example", "weco-shop.example"],
        identifiers=["WECO-0001"],
    ),
    ControllerInput(
        name="Pexgle Kft.",
        dsr_contacts=["dpo@pexgle.example"],
        breach_contacts=["dpo@pexgle.example", "ciso@pexgle.example"],
        subprocessor_contacts=["vendors@pexgle.example"],
        domains=["pexgle.example"],
        identifiers=["PX-7781"],
    ),
    ControllerInput(
        name="Nordlicht Reisen AG",
        dsr_contacts=["datenschutz@nordlicht.example"],
        breach_contacts=["it@nordlicht.example"],
        domains=["nordlicht.example"],
        identifiers=["NL-42"],
    ),
    ControllerInput(
        name="Atlas Insurance Ltd",
        dsr_contacts=["gdpr@atlas-ins.example"],
        breach_contacts=["incident@atlas-ins.example"],
        domains=["atlas-ins.example"],
    ),
    ControllerInput(
        name="Bistro Verde S.r.l.",
        dsr_contacts=["privacy@bistroverde.example"],
        domains=["bistroverde.example"],
    ),
]


# (email, role, names of the demo controllers assigned): one account per role.
DEMO_STAFF = [
    ("admin@desk.example", "admin", []),
    ("agent@desk.example", "agent", ["WECO Retail GmbH", "Pexgle Kft."]),
    ("privacy@desk.example", "privacy_officer", []),
    ("auditor@desk.example", "auditor", []),
]


def login_hint(emails: list[str]) -> Iterator[str]:
    """What a second `demo seed` says about logging in: the one-time passwords were printed by the first run only."""
    from app.auth.commands import users_cli  # the operator commands that exist in this version

    yield f"demo accounts already exist ({', '.join(emails)}); their one-time passwords were shown only when they were created."
    if "reset-password" in users_cli.commands:
        yield "to log in as one of them, issue a new one-time password: flask --app wsgi users reset-password admin@desk.example"
    else:
        yield (
            "to log in, create an account of your own (the password is read from stdin): "
            "flask --app wsgi users create you@desk.example --role admin; "
            "or start over with an empty database (then `demo seed` prints new one-time passwords)."
        )


def seed(session: Session, *, now: dt.datetime, policy: AuthPolicy | None = None) -> Iterator[str]:
    """Create whatever demo data is missing; yields one line per thing done (with new accounts' one-time passwords)."""
    by = Principal.system("demo seed")
    existing = set(session.scalars(select(Controller.name)))
    for data in DEMO_CONTROLLERS:
        if data.name in existing:
            continue
        controller = create_controller(session, data, by=by, now=now)
        yield f"controller {controller.id}: {controller.name}"
    ids = {name: cid for name, cid in session.execute(select(Controller.name, Controller.id))}
    have = set(session.scalars(select(User.email)))
    created = 0
    for email, role, names in DEMO_STAFF:
        if email in have:
            continue
        # A random password per run: the desk never ships a known default account.
        password = random_password()
        user = create_user(
            session, email, role=role, password=password, controller_ids=[ids[n] for n in names if n in ids], by=by, now=now, policy=policy or AuthPolicy()
        )
        code = issue_enrolment_code(session, user.id, by=by, now=now)
        created += 1
        yield f"staff {user.id}: {email} ({role}) one-time password: {password} enrolment code: {code}"
    if created:
        yield (
            "log in at /login; each account enters its enrolment code to set up its authenticator app (TOTP), then chooses its own password."
            " The passwords and codes are shown only now."
        )
    elif any(email in have for email, _role, _names in DEMO_STAFF):
        yield from login_hint([email for email, _role, _names in DEMO_STAFF if email in have])
    from app.dsr.demo import seed as seed_dsrs  # here: demo data of each feature stays in its package
    from app.tickets.demo import seed as seed_tickets

    yield from seed_tickets(session, now=now)

    yield from seed_dsrs(session, now=now)
    yield "demo data ready"
