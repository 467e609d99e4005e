"""The schema is made only by migrations: head matches the models; every revision goes up and down."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from app import migrations
from app.db import make_engine
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
