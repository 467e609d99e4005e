"""Policies per category: shipped defaults, per-controller overrides within the maximum, every change versioned and audited."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.retention import policies
from app.retention.periods import CATEGORIES, DEFAULTS, due
from app.retention.policies import InvalidPolicy
from tests.factories import make_controller
from tests.retention.support import SYSTEM

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def test_every_category_has_a_documented_default() -> None:
    text = (Path(__file__).parents[2] / "docs" / "retention.md").read_text(encoding="utf-8")
    for category in CATEGORIES:
        d = DEFAULTS[category]
        assert d.period_days > 0 and d.legal_basis and d.action in ("delete", "anonymise")
        assert f"`{category}`" in text


def test_due_is_exactly_the_period_after_the_event() -> None:
    event = T0
    assert not due(event, event + dt.timedelta(days=30) - dt.timedelta(seconds=1), 30)
    assert due(event, event + dt.timedelta(days=30), 30)
    assert not due(None, event + dt.timedelta(days=3000), 30)


def test_an_override_is_versioned_audited_and_bounded(session: Session) -> None:
    controller = make_controller(session)
    # Given the shipped default
    before = policies.effective(session, "closed_ticket_content", controller.id, now=T0)
    assert (before.source, before.period_days, before.version) == ("default", 365, 0)
    # When an admin shortens it for one controller, then lengthens it
    first = policies.change(
        session,
        "closed_ticket_content",
        controller_id=controller.id,
        period_days=30,
        action="delete",
        legal_basis="contract §4",
        max_days=3650,
        by=SYSTEM,
        now=T0,
    )
    second = policies.change(
        session,
        "closed_ticket_content",
        controller_id=controller.id,
        period_days=400,
        action="delete",
        legal_basis="contract §4",
        max_days=3650,
        by=SYSTEM,
        now=T0,
    )
    # Then the newest version is in force for that controller only
    now = policies.effective(session, "closed_ticket_content", controller.id, now=T0)
    assert (now.source, now.period_days, now.version, now.version_id) == ("controller", 400, 2, second.id)
    assert first.version == 1
    assert policies.effective(session, "closed_ticket_content", None, now=T0).period_days == 365
    # And both changes are in the audit log
    events = session.scalars(select(AuditEvent).where(AuditEvent.action == "retention.policy_changed")).all()
    assert [e.target_id for e in events][-2:] == [str(first.id), str(second.id)]
    # And beyond the configured maximum, an unknown category or an empty basis is refused
    with pytest.raises(InvalidPolicy):
        policies.change(
            session, "closed_ticket_content", controller_id=controller.id, period_days=4000, action="delete", legal_basis="x", max_days=3650, by=SYSTEM, now=T0
        )
    with pytest.raises(InvalidPolicy):
        policies.change(session, "nonsense", controller_id=None, period_days=10, action="delete", legal_basis="x", max_days=3650, by=SYSTEM, now=T0)
    with pytest.raises(InvalidPolicy):
        policies.change(
            session, "closed_ticket_content", controller_id=None, period_days=10, action="delete", legal_basis=" ", max_days=3650, by=SYSTEM, now=T0
        )
    # And withdrawing the override returns the controller to the desk-wide policy (version 1 = the default, written)
    policies.withdraw(session, "closed_ticket_content", controller_id=controller.id, by=SYSTEM, now=T0)
    back = policies.effective(session, "closed_ticket_content", controller.id, now=T0)
    assert (back.source, back.period_days, back.version) == ("desk", 365, 1)


def test_a_desk_wide_change_follows_the_written_default(session: Session) -> None:
    row = policies.change(
        session, "requester_identity", controller_id=None, period_days=90, action="anonymise", legal_basis="minimisation", max_days=3650, by=SYSTEM, now=T0
    )
    assert row.version == 2
    assert policies.effective(session, "requester_identity", None, now=T0).period_days == 90


def test_the_retention_settings_are_checked_at_start() -> None:
    from config.settings import ConfigError, DevelopmentConfig

    env = {"MASTER_SECRET": "m" * 40, "SECRET_KEY": "k" * 40, "DESK_INSTANCE_PATH": "/tmp/retention-settings"}
    settings = DevelopmentConfig.from_env(env)
    assert (settings["RETENTION_MAX_DAYS"], settings["RETENTION_RUN_AT"]) == (3650, "30 3 * * *")
    assert DevelopmentConfig.from_env({**env, "RETENTION_RUN_AT": " 0  2 * * 1 "})["RETENTION_RUN_AT"] == "0 2 * * 1"
    with pytest.raises(ConfigError, match="RETENTION_RUN_AT"):
        DevelopmentConfig.from_env({**env, "RETENTION_RUN_AT": "at three"})
    with pytest.raises(ConfigError, match="RETENTION_MAX_DAYS"):
        DevelopmentConfig.from_env({**env, "RETENTION_MAX_DAYS": "-1"})
