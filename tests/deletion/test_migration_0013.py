"""Migration 0013: existing erasures get their engine run; an unfinished one stops the upgrade; down and up again."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text

from app import migrations
from app.db import make_engine
from tests.databases import fresh_database

AT = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
OLD_REPORT = {"planned": {"tickets": 2}, "changed": {"messages": 8, "raw_destroyed": 4, "dsrs": 1}, "failed": []}


def _request_with_runs(engine: Engine, runs: list[tuple[int, str, str]]) -> None:
    """A controller, a request, and its runs as 0012 stored them: (id, kind, state)."""
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO controllers (id, name, status, created_at, updated_at) VALUES (1, 'Acme', 'active', :at, :at)"), {"at": AT})
        conn.execute(
            text(
                "INSERT INTO dsrs (id, types, state, is_open, source, received_at, due_at, missed_reason_missing, created_at, updated_at, row_uid)"
                " VALUES (1, '[]', 'triage', :t, 'staff', :at, :at, :f, :at, :at, 'uid-0013')"
            ),
            {"at": AT, "t": True, "f": False},
        )
        for run_id, kind, state in runs:
            conn.execute(
                text(
                    "INSERT INTO subject_data_runs (id, dsr_id, controller_id, kind, state, instruction_id, requested_by, key_owner, report,"
                    " created_at, updated_at, finished_at, row_uid) VALUES (:id, 1, 1, :kind, :state, 5, 3, 1, :report, :at, :at, :fin, :uid)"
                ),
                {
                    "id": run_id,
                    "kind": kind,
                    "state": state,
                    "report": json.dumps(OLD_REPORT),
                    "at": AT,
                    "fin": AT if state == "done" else None,
                    "uid": f"r{run_id}",
                },
            )


def test_0013_gives_each_finished_erasure_an_engine_run_and_goes_down_again(tmp_path: Path) -> None:
    with fresh_database(tmp_path, "engine") as url:
        migrations.upgrade(url, "0012")
        engine = make_engine(url)
        try:
            # Given a finished erasure and an export stored before 0013
            _request_with_runs(engine, [(1, "erase", "done"), (2, "export", "done")])
            # When migrated
            migrations.upgrade(url, "0013")
            with engine.connect() as conn:
                links = {r.id: r.deletion_run_id for r in conn.execute(text("SELECT id, deletion_run_id FROM subject_data_runs"))}
                rows = conn.execute(
                    text(
                        "SELECT id, authority_kind, authority_id, scope_kind, controller_id, action, state, requested_by, params_ct, report FROM deletion_runs"
                    )
                ).all()
            # Then the erasure points at its engine run, with its counts grouped by store; the export has none
            assert len(rows) == 1 and links == {1: rows[0].id, 2: None}
            row = rows[0]
            assert (row.authority_kind, row.authority_id, row.scope_kind, row.controller_id, row.action, row.state) == (
                "instruction",
                5,
                "subject",
                1,
                "redact",
                "done",
            )
            assert row.requested_by == "staff:3" and row.params_ct is None
            report = row.report if isinstance(row.report, dict) else json.loads(row.report)
            assert report["stores"] == {"ticket_messages": {"messages": 8}, "blobs": {"raw_destroyed": 4}, "dsrs": {"dsrs": 1}}
            assert report["planned"] == {"tickets": 2} and report["kept"] == []
            # And down again, the request's runs are as they were
            migrations.downgrade(url, "0012")
            assert "deletion_runs" not in inspect(engine).get_table_names()
            assert "deletion_run_id" not in {c["name"] for c in inspect(engine).get_columns("subject_data_runs")}
            with engine.connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM subject_data_runs")).scalar() == 2
        finally:
            engine.dispose()


def test_0013_stops_on_an_unfinished_erasure_and_names_it(tmp_path: Path) -> None:
    with fresh_database(tmp_path, "unfinished") as url:
        migrations.upgrade(url, "0012")
        engine = make_engine(url)
        try:
            _request_with_runs(engine, [(7, "erase", "running")])
            with pytest.raises(RuntimeError, match=r"run\(s\) 7: finish them with `flask subject-data resume ID`"):
                migrations.upgrade(url, "0013")
            assert "deletion_runs" not in inspect(engine).get_table_names()
        finally:
            engine.dispose()
