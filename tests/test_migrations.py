"""The schema is made only by migrations: head matches the models; every revision goes up and down."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from app import migrations
from app.db import make_engine
from tests.conftest import TEST_MASTER_SECRET
from tests.databases import fresh_database


def test_head_matches_the_models(database_url: str) -> None:
    # alembic check raises when autogenerate would emit any operation.
    migrations.check(database_url)


def test_every_revision_upgrades_and_downgrades(tmp_path: Path) -> None:
    with fresh_database(tmp_path, "updown") as url:
        cfg = migrations.alembic_config(url)
        revisions = list(reversed(list(ScriptDirectory.from_config(cfg).walk_revisions())))
        assert revisions, "no migrations found"
        for rev in revisions:
            migrations.upgrade(url, rev.revision)
            migrations.downgrade(url, rev.down_revision or "base")
            migrations.upgrade(url, rev.revision)
        engine = make_engine(url)
        try:
            assert "controllers" in inspect(engine).get_table_names()
        finally:
            engine.dispose()
        migrations.downgrade(url, "base")
        engine = make_engine(url)
        try:
            assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        finally:
            engine.dispose()


def test_one_head_only() -> None:
    cfg = migrations.alembic_config("sqlite:////nonexistent")
    assert len(ScriptDirectory.from_config(cfg).get_heads()) == 1


def test_0012_renames_the_missed_deadline_columns_keeping_the_data(tmp_path: Path) -> None:
    # Given a request that missed its deadline, stored before 0012 (as "breached"), with its history line
    with fresh_database(tmp_path, "missed") as url:
        migrations.upgrade(url, "0011")
        engine = make_engine(url)
        at = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
        try:
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO dsrs (id, types, state, is_open, source, received_at, due_at, sla_breached_at, breach_reason_ct,"
                        " breach_reason_missing, created_at, updated_at, row_uid)"
                        " VALUES (1, '[]', 'triage', :t, 'staff', :at, :at, :at, :ct, :f, :at, :at, 'uid-0012')"
                    ),
                    {"at": at, "ct": b"\x01ciphertext", "t": True, "f": False},
                )
                conn.execute(
                    text(
                        "INSERT INTO dsr_events (dsr_id, at, code, by_label, details)"
                        " VALUES (1, :at, 'sla_breached', 'test', '{}'), (1, :at, 'breach_reason', 'test', '{}')"
                    ),
                    {"at": at},
                )

            def stored(*columns: str) -> tuple[object, ...]:
                with engine.connect() as conn:
                    row = conn.execute(text(f"SELECT {', '.join(columns)} FROM dsrs WHERE id = 1")).one()
                    codes = sorted(conn.execute(text("SELECT code FROM dsr_events WHERE dsr_id = 1")).scalars())
                return (*row, codes)

            # When migrated to 0012, then the same values are under the new names, and the history says "missed"
            migrations.upgrade(url, "0012")
            missed_at, reason_ct, missing, codes = stored("missed_at", "missed_reason_ct", "missed_reason_missing")
            assert missed_at is not None and bytes(reason_ct) == b"\x01ciphertext" and not missing  # type: ignore[arg-type]
            assert codes == ["missed", "missed_reason"]
            indexes = {i["name"] for i in inspect(engine).get_indexes("dsrs")}
            assert {"ix_dsrs_state_missed_at_due_at", "ix_dsrs_missed_reason_missing"} <= indexes
            assert not any("breach" in str(name) for name in indexes)
            # And back down to 0011, the old names hold them again
            migrations.downgrade(url, "0011")
            breached_at, reason_ct, missing, codes = stored("sla_breached_at", "breach_reason_ct", "breach_reason_missing")
            assert breached_at is not None and bytes(reason_ct) == b"\x01ciphertext" and not missing  # type: ignore[arg-type]
            assert codes == ["breach_reason", "sla_breached"]
            assert "ix_dsrs_state_sla_breached_at_due_at" in {i["name"] for i in inspect(engine).get_indexes("dsrs")}
        finally:
            engine.dispose()


def test_upgrading_a_database_with_data_loses_no_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Migrations that re-key existing rows (0016, 0018) build a keyring from the environment outside the app.
    monkeypatch.setenv("DESK_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("MASTER_SECRET", TEST_MASTER_SECRET)
    monkeypatch.setenv("SECRET_KEY", "test-secret-key")
    # Given a desk at 0009 holding a controller, a ticket with a message, a request with its history, and a
    # finished export run with its file: rows in tables that later migrations rebuild on SQLite (batch mode)
    # and in the children that reference them ON DELETE CASCADE.
    with fresh_database(tmp_path, "withdata") as url:
        migrations.upgrade(url, "0009")
        engine = make_engine(url)
        at = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
        rows = {
            "controllers": "INSERT INTO controllers (id, name, status, created_at, updated_at) VALUES (1, 'Acme', 'active', :at, :at)",
            "tickets": "INSERT INTO tickets (id, controller_id, key_owner, status, reply_token, created_at, updated_at, row_uid)"
            " VALUES (1, 1, 1, 'open', 'tok0009', :at, :at, 'uid-t1')",
            "ticket_messages": "INSERT INTO ticket_messages (id, ticket_id, direction, key_owner, is_auto_reply, flags, notes, created_at, row_uid)"
            " VALUES (1, 1, 'inbound', 1, :f, '[]', '[]', :at, 'uid-m1')",
            "dsrs": "INSERT INTO dsrs (id, ticket_id, types, state, is_open, source, received_at, due_at, breach_reason_missing, created_at, updated_at,"
            " row_uid) VALUES (1, 1, '[]', 'closed', :f, 'staff', :at, :at, :f, :at, :at, 'uid-d1')",
            "dsr_events": "INSERT INTO dsr_events (id, dsr_id, at, code, by_label, details) VALUES (1, 1, :at, 'created', 'staff:1', '{}')",
            "subject_data_runs": "INSERT INTO subject_data_runs (id, dsr_id, controller_id, kind, state, instruction_id, key_owner, report, created_at,"
            " updated_at, finished_at, row_uid) VALUES (1, 1, 1, 'export', 'done', 1, 1, '{}', :at, :at, :at, 'uid-r1')",
            "subject_data_exports": "INSERT INTO subject_data_exports (id, run_id, dsr_id, controller_id, format, size, sha256, created_at, expires_at)"
            " VALUES (1, 1, 1, 1, 'json', 2, :sha, :at, :at)",
        }
        try:
            with engine.begin() as conn:
                for sql in rows.values():
                    conn.execute(text(sql), {"at": at, "f": False, "sha": "0" * 64})
        finally:
            engine.dispose()
        # When every later migration runs
        migrations.upgrade(url, "head")
        # Then every row is still there
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                counts = {table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() for table in rows}
        finally:
            engine.dispose()
        assert counts == dict.fromkeys(rows, 1)
