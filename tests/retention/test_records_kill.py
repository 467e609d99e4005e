"""kill -9 in the middle of a retention run over records (quarantined mail), then a rerun: nothing twice, nothing held, the ledger right."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from app import create_app
from app import migrations as desk_migrations
from app.deletion.models import DeletionRun
from app.extensions import db
from app.mail.quarantine import QuarantinedMessage
from app.retention import holds
from app.retention.models import RetentionRun
from config.settings import normalise_database_url
from tests.conftest import make_config
from tests.databases import fresh_database
from tests.factories import make_controller
from tests.retention.records import quarantined
from tests.retention.support import SYSTEM, flask_env, wait_for

REPO = Path(__file__).resolve().parents[2]
LONG_AGO = dt.datetime(2020, 1, 1, 9, 0, tzinfo=dt.UTC)
SECRET = "retention-records-kill-secret-0123456789abcdef"
COUNT = 45


@pytest.fixture
def database(tmp_path: Path) -> Iterator[str]:
    with fresh_database(tmp_path, "records") as url:
        desk_migrations.upgrade(url)
        yield url


def _run(url: str, folder: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "retention", "run", "--category", "quarantined_mail", "--chunk", "3"]
    return subprocess.Popen(command, cwd=REPO, env=flask_env(url, folder, SECRET), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_kill_9_mid_run_over_quarantined_mail_then_rerun(database: str, tmp_path: Path) -> None:
    # Given 45 quarantined messages received long ago, one from a controller under a hold
    app = create_app(make_config(database, tmp_path / "seed", MASTER_SECRET=SECRET))
    try:
        with app.app_context(), db.session_scope() as s:
            controller = make_controller(s, domains=["held.example"])
            ids = [quarantined(s, "held@held.example" if n == 17 else f"stranger{n}@nowhere.example", LONG_AGO, n=n).id for n in range(COUNT)]
            holds.place(s, kind="controller", controller_id=controller.id, basis="litigation", until=None, by=SYSTEM, now=LONG_AGO)
    finally:
        db.state(app).engine.dispose()
    held = ids[17]
    watcher = create_engine(normalise_database_url(database))
    try:
        # When the run is killed with SIGKILL once two engine runs have finished
        proc = _run(database, tmp_path / "instance")
        wait_for(watcher, proc, "SELECT COUNT(*) FROM deletion_runs WHERE state = 'done'", 2)
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        assert killed, "the run finished before the kill"
        with watcher.connect() as conn:
            assert conn.execute(text("SELECT state FROM retention_runs")).scalar() == "running"
            left = conn.execute(text("SELECT COUNT(*) FROM mail_quarantine")).scalar()
        assert 1 < int(left or 0) < COUNT
        # Then a rerun resumes the same ledger row and finishes it
        again = _run(database, tmp_path / "instance")
        out, err = again.communicate(timeout=300)
        assert again.returncode == 0, err.decode()
        assert b"(resumed) done" in out, out.decode()
    finally:
        watcher.dispose()
    app = create_app(make_config(database, tmp_path / "after", MASTER_SECRET=SECRET))
    try:
        with app.app_context(), db.session_scope() as s:
            # Nothing held deleted, everything else gone
            assert list(s.scalars(select(QuarantinedMessage.id))) == [held]
            # Nothing deleted twice: the engine runs together deleted each other message once
            reports = [r.report for r in s.scalars(select(DeletionRun).where(DeletionRun.scope_kind == "records"))]
            assert sum(int((r.get("stores") or {}).get("mail_quarantine", {}).get("quarantine_deleted", 0)) for r in reports) == COUNT - 1
            assert all(r.state == "done" for r in s.scalars(select(DeletionRun)))
            # The ledger is right: one run, every message counted due once, the held one held
            assert s.scalar(select(func.count()).select_from(RetentionRun)) == 1
            row = s.scalars(select(RetentionRun)).one()
            counts = row.counts["quarantined_mail"]["*"]
            assert row.state == "done" and (counts["due"], counts["deleted"], counts["held"]) == (COUNT, COUNT - 1, 1)
    finally:
        db.state(app).engine.dispose()
