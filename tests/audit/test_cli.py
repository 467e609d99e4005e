"""`flask audit checkpoint` and `flask audit verify` as an operator runs them, on a really committed database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import text

from app.audit import service as audit
from app.db import utcnow
from app.extensions import db
from app.principal import Principal
from tests.conftest import app_on_own_database


@pytest.fixture
def own_app(app: Flask, tmp_path: Path) -> Iterator[Flask]:
    with app_on_own_database(app, tmp_path, "auditcli", AUDIT_CHECKPOINT_PATH=str(tmp_path / "signed" / "heads.log")) as private:
        yield private


def _append(app: Flask, n: int) -> None:
    with app.app_context(), db.session_scope() as session:
        for i in range(n):
            audit.record(session, by=Principal.system("tests"), action="test.cli", target_type="thing", target_id=i, now=utcnow())


def test_checkpoint_then_verify_then_tamper(own_app: Flask, tmp_path: Path) -> None:
    runner = own_app.test_cli_runner()
    _append(own_app, 6)

    signed = runner.invoke(args=["audit", "checkpoint"])
    assert signed.exit_code == 0, signed.output
    assert "checkpoint at seq 6 (signed), master key version 1" in signed.output
    line = (tmp_path / "signed" / "heads.log").read_text().splitlines()
    assert len(line) == 1 and line[0].split()[1] == "6"
    again = runner.invoke(args=["audit", "checkpoint"])
    assert "unchanged" in again.output and len((tmp_path / "signed" / "heads.log").read_text().splitlines()) == 1

    ok = runner.invoke(args=["audit", "verify", "--quiet"])
    assert ok.exit_code == 0
    assert ok.output.startswith("ok, 6 events, last checkpoint at seq 6 signed ")

    # The database owner cuts the tail behind the triggers' back.
    with db.state(own_app).engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER audit_events_no_delete"))
        conn.execute(text("DELETE FROM audit_events WHERE seq >= 5"))
    broken = runner.invoke(args=["audit", "verify", "--quiet"])
    assert broken.exit_code == 1
    assert "BROKEN at event seq 5" in broken.output and "events were removed" in broken.output


def test_verify_help_and_empty_log(own_app: Flask) -> None:
    runner = own_app.test_cli_runner()
    assert runner.invoke(args=["audit", "verify", "--help"]).exit_code == 0
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0 and "ok, 0 events, no checkpoint yet" in result.output
