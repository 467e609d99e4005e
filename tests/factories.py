"""Plain factory functions: `make_controller(session, **kw)`."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy.orm import Session

from app.controllers.models import Controller
from app.controllers.service import ControllerInput, create_controller
from app.db import utcnow
from app.principal import Principal

_seq = itertools.count(1)
TEST_PRINCIPAL = Principal.system("tests")


def make_controller(session: Session, **kw: Any) -> Controller:
    """A valid active controller; keyword arguments override ControllerInput fields."""
    n = next(_seq)
    fields: dict[str, Any] = {
        "name": f"Controller {n}",
        "dsr_contacts": [f"dpo{n}@controller{n}.example"],
        "domains": [f"controller{n}.example"],
    }
    fields.update(kw)
    return create_controller(session, ControllerInput(**fields), by=TEST_PRINCIPAL, now=utcnow())
