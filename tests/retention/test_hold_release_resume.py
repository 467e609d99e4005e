"""A hold's release stopped mid-run (`kill -9`, Ctrl-C) is resumed by the next `retention run`: nothing is done twice.

Real processes on a database of their own: the erasure is kept whole under a litigation hold, the operator lifts
it (`retention hold lift`), `retention run` is interrupted once the release has committed a batch, and a second
`retention run` finishes it. Then: one release run, one notice to the controller, the ledger counting it once.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from app import create_app
from app.audit.models import AuditEvent
from app.deletion.models import DeletionRun
from app.deletion.report import changes
from app.dsr.models import DsrEvent
from app.extensions import db
from app.mail.models import OutboxEmail
from app.retention import holds
from app.retention.models import RetentionRun
from app.tickets.models import Message
from config.settings import normalise_database_url
from tests.conftest import make_config
from tests.databases import migrated_database
from tests.retention.support import SYSTEM, erase_under_instruction, flask_env, wait_for
from tests.subject_data.support import CANARY_NAME, T0, scene

REPO = Path(__file__).resolve().parents[2]
SECRET = "hold-release-test-master-secret-0123456789ab"


@pytest.fixture
def database(tmp_path: Path) -> Iterator[str]:
    with migrated_database(tmp_path, "release") as url:
        yield url


@dataclass(frozen=True)
class Seeded:
    hold_id: int
    dsr_id: int
    kept: int
    with_canary: int


def _flask(url: str, folder: Path, *args: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "retention", *args]
    return subprocess.Popen(command, cwd=REPO, env=flask_env(url, folder, SECRET), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _seed(database: str, folder: Path) -> Seeded:
    """A subject with 3 tickets of 90 messages (two batches of the engine), erased under the controller's instruction while a litigation hold keeps it all."""
    app = create_app(make_config(database, folder, MASTER_SECRET=SECRET))
    try:
        with app.app_context(), db.session_scope() as s:
            sc = scene(s, messages=90, tickets_count=3)
            hold = holds.place(s, kind="controller", controller_id=sc.controller.id, basis="litigation", basis_text="Case 9", until=None, by=SYSTEM, now=T0)
            done = erase_under_instruction(s, sc)
            with_canary = sum(CANARY_NAME in (m.body_text or "") for m in s.scalars(select(Message)))
            return Seeded(hold.id, sc.dsr.id, len(done.report["kept"]), with_canary)
    finally:
        db.state(app).engine.dispose()


RELEASE_BATCHES = (
    "SELECT COUNT(*) FROM audit_events WHERE action = 'deletion.batch' AND target_id = "
    "(SELECT CAST(MAX(id) AS TEXT) FROM deletion_runs WHERE authority_kind = 'hold_release')"
)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_a_release_interrupted_mid_run_is_finished_by_the_next_run_and_nothing_is_done_twice(database: str, tmp_path: Path, sig: signal.Signals) -> None:
    # Given an erasure kept whole under a litigation hold, and the operator lifting the hold
    instance = tmp_path / "instance"
    seeded = _seed(database, instance)
    assert seeded.kept > 0 and seeded.with_canary > 0
    lift = _flask(database, instance, "hold", "lift", str(seeded.hold_id))
    out, err = lift.communicate(timeout=120)
    assert lift.returncode == 0, err.decode()
    watcher = create_engine(normalise_database_url(database))
    try:
        # When `retention run` is interrupted once the release has committed a batch of its own
        proc = _flask(database, instance, "run")
        wait_for(watcher, proc, RELEASE_BATCHES, 1)
        interrupted = proc.poll() is None
        if interrupted:
            proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
        assert interrupted, "the run finished before the signal: seed more messages"
        with watcher.connect() as conn:
            state = conn.execute(text("SELECT state FROM deletion_runs WHERE authority_kind = 'hold_release'")).scalar()
            ledger_state = conn.execute(text("SELECT state FROM retention_runs")).scalar()
        assert state in ("queued", "running"), "the release finished before the signal: seed more messages"
        if sig == signal.SIGINT:
            assert proc.returncode == 130 and "run retention run again to resume" in err.decode(), err.decode()
            assert ledger_state == "stopped"
        else:
            assert ledger_state == "running"
        # Then the next run resumes the same ledger row and finishes the release
        again = _flask(database, instance, "run")
        out, err = again.communicate(timeout=300)
        assert again.returncode == 0, err.decode()
        assert b"(resumed) done" in out, out.decode()
    finally:
        watcher.dispose()
    app = create_app(make_config(database, tmp_path / "after", MASTER_SECRET=SECRET))
    try:
        with app.app_context(), db.session_scope() as s:
            # Nothing of the subject is left
            assert sum(CANARY_NAME in (m.body_text or "") for m in s.scalars(select(Message))) == 0
            # One release, finished; one notice to the controller; one line of it in the request's history and the audit log
            [release] = s.scalars(select(DeletionRun).where(DeletionRun.authority_kind == "hold_release")).all()
            assert release.state == "done"
            assert s.scalar(select(func.count()).select_from(OutboxEmail).where(OutboxEmail.kind == "dsr_hold_release")) == 1
            codes = s.scalars(select(DsrEvent.code).where(DsrEvent.dsr_id == seeded.dsr_id)).all()
            assert codes.count("hold_release_started") == 1 and codes.count("hold_release_done") == 1
            assert s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "retention.hold_release")) == 1
            # The ledger: one run, the release counted once (what the hold kept, what the release changed)
            [row] = s.scalars(select(RetentionRun)).all()
            counts = row.counts["hold_release"][str(release.controller_id)]
            assert row.state == "done" and counts["due"] == counts["deleted"] == seeded.kept and counts["held"] == 0
            assert counts["changed"] == sum(changes(release.report).values()) > 0
            assert row.cursor["releases"] == [release.id] and row.cursor["settled"] == [release.id]
    finally:
        db.state(app).engine.dispose()
