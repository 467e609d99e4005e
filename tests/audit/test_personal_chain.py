"""`audit verify` on a really committed chain with personal parts: it passes after a month is shredded, and a
changed part is named; the append-only guards still hold for the new column; the app role can shred, not rewrite."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from flask import Flask
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from app import create_app, migrations
from app.audit import service as audit
from app.audit.models import AuditEvent
from app.audit.shredding import shred_periods_before
from app.crypto.models import PeriodKey
from app.extensions import db
from app.principal import Principal
from tests.conftest import app_on_own_database, make_config
from tests.databases import ON_POSTGRES

JAN = dt.datetime(2020, 1, 15, 9, 30, tzinfo=dt.UTC)
FEB = dt.datetime(2020, 2, 1, tzinfo=dt.UTC)
MAR = dt.datetime(2020, 3, 1, tzinfo=dt.UTC)
SYSTEM = Principal.system("tests: audit personal")


@pytest.fixture
def own_app(app: Flask, tmp_path: Path) -> Iterator[Flask]:
    with app_on_own_database(app, tmp_path, "auditparts", AUDIT_CHECKPOINT_PATH=str(tmp_path / "signed" / "heads.log")) as private:
        yield private


def _record(app: Flask) -> None:
    # Two January events with parts, one without, one February event with a part: all committed
    with app.app_context(), db.session_scope() as session:
        for i, (at, part) in enumerate([(JAN, {"a": "jan-1"}), (JAN, None), (JAN, {"a": "jan-2"}), (FEB, {"a": "feb"})]):
            audit.record(session, by=SYSTEM, action="test.parts", target_type="thing", target_id=i, controller_id=4, personal=part, now=at)


def _shown(app: Flask) -> dict[str, str]:
    with app.app_context(), db.session_scope() as session:
        page = audit.search_events(session, audit.EventFilter(action="test.parts"))
        return {str(e.target_id): e.personal.shown() if e.personal else "" for e in page.events}


def test_verify_passes_after_a_month_is_shredded_and_names_a_changed_part(own_app: Flask) -> None:
    runner = own_app.test_cli_runner()
    _record(own_app)
    assert runner.invoke(args=["audit", "checkpoint"]).exit_code == 0
    assert _shown(own_app) == {"0": "a: jan-1", "1": "", "2": "a: jan-2", "3": "a: feb"}
    # When January's parts are shredded (committed)
    with own_app.app_context(), db.session_scope() as session:
        assert shred_periods_before(session, FEB, by=SYSTEM, now=MAR).shredded == {"2020-01": 2}
    # Then they read as shredded, February's still reads, and the whole chain verifies against the checkpoint
    assert _shown(own_app) == {"0": "[shredded]", "1": "", "2": "[shredded]", "3": "a: feb"}
    verified = runner.invoke(args=["audit", "verify", "--quiet"])
    assert verified.exit_code == 0, verified.output
    assert verified.output.startswith("ok, 5 events, last checkpoint at seq 4 ")  # 4 recorded + the shredding's own event
    # The append-only guards hold for the new column too
    with db.state(own_app).engine.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
        conn.execute(text("UPDATE audit_events SET personal_ct = NULL WHERE seq = 1"))
    # An owner who goes round them and swaps a part is named by verify, at that event
    with db.state(own_app).engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER audit_events_no_update"))
        conn.execute(text("UPDATE audit_events SET personal_ct = (SELECT personal_ct FROM audit_events WHERE seq = 1) WHERE seq = 3"))
    broken = runner.invoke(args=["audit", "verify", "--quiet"])
    assert broken.exit_code == 1 and "BROKEN at event seq 3" in broken.output and "content" in broken.output


@pytest.mark.skipif(not ON_POSTGRES, reason="roles are a Postgres matter")
def test_the_app_role_can_shred_a_month_but_not_rewrite_a_part(own_app: Flask, tmp_path: Path) -> None:
    url = own_app.config["DATABASE_URL"]
    role = f"desk_app_{uuid.uuid4().hex[:8]}"
    owner = create_engine(url)
    try:
        with owner.begin() as conn:
            conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD 'app-test-pw'"))
        assert own_app.test_cli_runner().invoke(args=["db", "grant", role]).exit_code == 0
        app_url = make_url(url).set(username=role, password="app-test-pw").render_as_string(hide_password=False)
        desk = create_app(make_config(app_url, tmp_path / "as-app"))
        try:
            # The app, under its role, records parts and shreds a month (rows of period_keys only)
            _record(desk)
            with desk.app_context(), db.session_scope() as session:
                assert shred_periods_before(session, FEB, by=SYSTEM, now=MAR).shredded == {"2020-01": 2}
            with desk.app_context(), db.session_scope() as session:
                assert session.scalars(select(PeriodKey.state).where(PeriodKey.period == "2020-01")).one() == "shredded"
                assert session.scalar(select(AuditEvent.personal_ct).where(AuditEvent.seq == 1)) is not None  # the row is as it was
            # But it cannot rewrite or remove a part
            as_app = create_engine(app_url)
            try:
                for statement in ("UPDATE audit_events SET personal_ct = NULL WHERE seq = 1", "DELETE FROM audit_events WHERE seq = 1"):
                    with pytest.raises(DBAPIError), as_app.begin() as conn:
                        conn.execute(text(statement))
            finally:
                as_app.dispose()
        finally:
            db.state(desk).engine.dispose()
        assert own_app.test_cli_runner().invoke(args=["audit", "verify", "--quiet"]).exit_code == 0
    finally:
        with owner.begin() as conn:
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))
        owner.dispose()


def test_migration_0022_keeps_the_guards_and_refuses_a_downgrade_that_would_break_a_hash(own_app: Flask) -> None:
    url = own_app.config["DATABASE_URL"]
    head = ScriptDirectory.from_config(migrations.alembic_config(url)).get_current_head()
    # A downgrade past 0022 with no part stored goes, and the triggers of 0003 are still there after
    migrations.downgrade(url, "0021")
    migrations.upgrade(url)
    _record(own_app)
    with db.state(own_app).engine.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
        conn.execute(text("DELETE FROM audit_events WHERE seq = 1"))
    # With parts stored, it is refused: dropping the column would break their events' hashes
    with pytest.raises(RuntimeError, match="3 audit events have a personal part"):
        migrations.downgrade(url, "0021")
    db.state(own_app).engine.dispose()
    # 0022 stays (Postgres rolls the whole downgrade back; SQLite keeps the later revisions' steps down, so up again)
    with db.state(own_app).engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() in (head, "0022")
    migrations.upgrade(url)
    assert _shown(own_app) == {"0": "a: jan-1", "1": "", "2": "a: jan-2", "3": "a: feb"}
    assert own_app.test_cli_runner().invoke(args=["audit", "verify", "--quiet"]).exit_code == 0
