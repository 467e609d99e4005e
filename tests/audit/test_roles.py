"""Issue 12 item 13: the app runs under a role that cannot lift the audit log's guards; checkpoints often and off the host.

Also item 14's `flask db downgrade nonsense` (one line, not a traceback).
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from app import create_app, migrations
from app.audit import service as audit
from app.db import utcnow
from app.extensions import db
from app.principal import Principal
from tests.conftest import app_on_own_database, make_config
from tests.databases import ON_POSTGRES
from workers.scheduler import JOBS


@pytest.fixture
def own_app(app: Flask, tmp_path: Path) -> Iterator[Flask]:
    with app_on_own_database(app, tmp_path, "auditrole", AUDIT_CHECKPOINT_PATH=str(tmp_path / "signed" / "heads.log")) as private:
        yield private


def _append(app: Flask, n: int) -> None:
    with app.app_context(), db.session_scope() as session:
        for i in range(n):
            audit.record(session, by=Principal.system("tests"), action="test.role", target_type="thing", target_id=i, now=utcnow())


def test_the_owner_drops_the_triggers_rewrites_an_event_and_verify_names_it(own_app: Flask) -> None:
    runner = own_app.test_cli_runner()
    _append(own_app, 6)
    assert runner.invoke(args=["audit", "checkpoint"]).exit_code == 0
    # Given the owner (who alone may) drops the guards and rewrites event 3
    with db.state(own_app).engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("DROP TRIGGER audit_events_no_update_delete ON audit_events"))
        else:
            conn.execute(text("DROP TRIGGER audit_events_no_update"))
        conn.execute(text("UPDATE audit_events SET action = 'test.nothing_to_see' WHERE seq = 3"))
    # Then verify names the event
    broken = runner.invoke(args=["audit", "verify", "--quiet"])
    assert broken.exit_code == 1 and "BROKEN at event seq 3" in broken.output


def test_checkpoints_are_signed_every_minute() -> None:
    [job] = [j for j in JOBS if j.actor == "audit_checkpoint"]
    assert job.every <= 60


def test_checkpoint_to_a_path_and_to_syslog(own_app: Flask, tmp_path: Path) -> None:
    runner = own_app.test_cli_runner()
    _append(own_app, 2)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(5)
    try:
        target = tmp_path / "elsewhere" / "heads.log"
        target.parent.mkdir()
        port = sink.getsockname()[1]
        done = runner.invoke(args=["audit", "checkpoint", "--path", str(target), "--syslog", f"127.0.0.1:{port}"])
        assert done.exit_code == 0, done.output
        [line] = target.read_text().splitlines()
        assert line.startswith("v1 2 ")
        assert line in sink.recv(4096).decode()
    finally:
        sink.close()
    bad = runner.invoke(args=["audit", "checkpoint", "--syslog", "nowhere"])
    assert bad.exit_code != 0 and "HOST:PORT" in bad.output and "Traceback" not in bad.output


def test_checkpoint_to_a_path_whose_folder_is_missing_is_one_line_and_writes_nothing(own_app: Flask, tmp_path: Path) -> None:
    runner = own_app.test_cli_runner()
    _append(own_app, 2)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(0.5)
    try:
        # Given a --path whose folder does not exist (a typo of /var/lib/desk/checkpoints, say)
        target = tmp_path / "no-such-folder" / "deeper" / "heads.log"
        done = runner.invoke(args=["audit", "checkpoint", "--path", str(target), "--syslog", f"127.0.0.1:{sink.getsockname()[1]}"])
        # Then one line naming the folder, exit 2, and nothing created, signed or sent
        assert done.exit_code == 2, done.output
        assert done.output == f"Error: no folder {target.parent} for the checkpoint file; create it first\n"
        assert not (tmp_path / "no-such-folder").exists()
        with pytest.raises(TimeoutError):
            sink.recv(4096)
    finally:
        sink.close()
    # And with the folder made, the same command signs there
    target.parent.mkdir(parents=True)
    assert runner.invoke(args=["audit", "checkpoint", "--path", str(target)]).exit_code == 0
    assert target.read_text().startswith("v1 2 ")


def test_db_downgrade_to_an_unknown_revision_is_one_line(own_app: Flask) -> None:
    result = own_app.test_cli_runner().invoke(args=["db", "downgrade", "nonsense"])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "nonsense" in result.output and "Traceback" not in result.output


def test_migrations_use_the_owner_url_and_fall_back_to_database_url() -> None:
    from config.settings import DevelopmentConfig

    both = DevelopmentConfig.from_env(
        {"DATABASE_URL": "postgresql://app@h/d", "MIGRATION_DATABASE_URL": "postgresql://owner@h/d", "SECRET_KEY": "s", "MASTER_SECRET": "m" * 40}
    )
    assert both["MIGRATION_DATABASE_URL"] == "postgresql+psycopg://owner@h/d" and both["DATABASE_URL"] == "postgresql+psycopg://app@h/d"
    old = DevelopmentConfig.from_env({"DATABASE_URL": "postgresql://app@h/d", "SECRET_KEY": "s", "MASTER_SECRET": "m" * 40})
    assert old["MIGRATION_DATABASE_URL"] == old["DATABASE_URL"]


def test_db_grant_needs_postgres_and_a_plain_role_name(own_app: Flask) -> None:
    runner = own_app.test_cli_runner()
    assert "plain lower-case" in runner.invoke(args=["db", "grant", "x; DROP TABLE audit_events"]).output
    if not ON_POSTGRES:
        refused = runner.invoke(args=["db", "grant", "desk_app"])
        assert refused.exit_code == 2 and "Postgres" in refused.output


@pytest.mark.skipif(not ON_POSTGRES, reason="roles are a Postgres matter")
def test_the_app_role_cannot_drop_or_disable_the_audit_guards(own_app: Flask, tmp_path: Path) -> None:
    url = own_app.config["DATABASE_URL"]
    role = f"desk_app_{uuid.uuid4().hex[:8]}"
    owner = create_engine(url)
    try:
        with owner.begin() as conn:
            conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD 'app-test-pw'"))
        # Given the app role set up by the command the operator runs
        granted = own_app.test_cli_runner().invoke(args=["db", "grant", role])
        assert granted.exit_code == 0, granted.output
        _append(own_app, 3)
        app_url = make_url(url).set(username=role, password="app-test-pw").render_as_string(hide_password=False)
        as_app = create_engine(app_url)
        desk = create_app(make_config(app_url, tmp_path / "as-app"))
        try:
            # The app itself runs under the role: it appends events (the sequence and the insert are granted)
            _append(desk, 2)
            with as_app.begin() as conn:
                assert conn.execute(text("SELECT count(*) FROM audit_events")).scalar() == 5
                conn.execute(text("SELECT count(*) FROM tickets"))
            # But none of the ways round the guard
            for statement in (
                "DROP TRIGGER audit_events_no_update_delete ON audit_events",
                "ALTER TABLE audit_events DISABLE TRIGGER USER",
                "DROP TABLE audit_events",
                "DROP FUNCTION audit_events_refuse_change() CASCADE",
                "UPDATE audit_events SET action = 'x' WHERE seq = 1",
                "DELETE FROM audit_events WHERE seq = 3",
                "TRUNCATE audit_events",
                "CREATE TABLE evil (id int)",
                "UPDATE alembic_version SET version_num = 'x'",
            ):
                with pytest.raises(ProgrammingError), as_app.begin() as conn:
                    conn.execute(text(statement))
        finally:
            as_app.dispose()
            db.state(desk).engine.dispose()
        assert own_app.test_cli_runner().invoke(args=["audit", "verify", "--quiet"]).exit_code == 0
    finally:
        with owner.begin() as conn:
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))
        owner.dispose()


def test_grant_statements_keep_the_audit_table_append_only() -> None:
    sql = "\n".join(migrations.grant_statements("desk_app"))
    assert "REVOKE UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES ON audit_events FROM desk_app" in sql
    assert "TRIGGER" not in sql.split("REVOKE")[0]
