"""`keys rotate --reencrypt` from master v1 to v2: live writes meanwhile, kill -9 at any point, rerun."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, select, text

from app import create_app
from app.controllers.models import Controller, ControllerContact
from app.crypto.keys import data_keys
from app.db import utcnow
from app.extensions import db
from app.jobs.locks import ProcessLock, advisory_key
from app.keys import rotation
from app.keys.service import key_status, rewrap_keys
from config.settings import normalise_database_url
from tests.conftest import make_config
from tests.databases import migrated_database
from tests.factories import TEST_PRINCIPAL, make_controller

REPO = Path(__file__).resolve().parents[2]
V1 = "v1-master-secret-0123456789abcdef-0123456789"
V2 = "v2-master-secret-fedcba9876543210-9876543210"
V2_ENV = {"MASTER_SECRET": V2, "MASTER_KEY_VERSION": "2", "MASTER_SECRET_V1": V1}


@pytest.fixture
def database(tmp_path: Path) -> Iterator[str]:
    with migrated_database(tmp_path, "rotation") as url:
        yield url


_APPS: list[Flask] = []


@pytest.fixture(autouse=True)
def _dispose_apps(database: str) -> Iterator[None]:
    # Close every app's pool before the database is dropped.
    yield
    while _APPS:
        db.state(_APPS.pop()).engine.dispose()


def app_for(url: str, folder: Path, **env: str) -> Flask:
    app = create_app(make_config(url, folder, **env))
    _APPS.append(app)
    return app


def seed(app: Flask, controllers: int, contacts: int) -> dict[int, str]:
    """Controllers with `contacts` DSR addresses each, under master v1; returns contact id -> address."""
    with app.app_context(), db.session_scope() as s:
        for i in range(controllers):
            make_controller(s, name=f"Rot {i}", dsr_contacts=[f"p{k}@c{i}.example" for k in range(contacts)], domains=[])
    return addresses(app)


def addresses(app: Flask) -> dict[int, str]:
    with app.app_context(), db.session_scope() as s:
        return {c.id: c.email or "" for c in s.scalars(select(ControllerContact))}


def assert_fully_rotated(app: Flask) -> None:
    """Every data key is current and active, nothing left on v1, every value names an active key."""
    with app.app_context(), db.session_scope() as s:
        status = key_status(s)
        by_version = {v.version: v for v in status.versions}
        assert by_version[1].data_keys == 0 and by_version[1].values == 0 and by_version[1].removable
        assert status.values_on_retired_keys == 0
        states = {state for (state,) in s.execute(select(data_keys.c.state))}
        assert states == {"active"}
        assert s.execute(text("SELECT COUNT(*) FROM job_state WHERE name = :n"), {"n": rotation.JOB}).scalar() == 0


def test_rotation_with_live_writes_loses_nothing(database: str, tmp_path: Path) -> None:
    # Given 40 controllers x 3 contacts under master v1, and the desk restarted with v2 current
    before = seed(app_for(database, tmp_path / "v1", MASTER_SECRET=V1), 40, 3)
    app = app_for(database, tmp_path / "v2", **V2_ENV)
    expected = dict(before)
    lock = threading.Lock()
    rotating = threading.Event()
    finished = threading.Event()
    errors: list[BaseException] = []
    writes_during = [0]

    def writer(seed_value: int) -> None:
        rnd = random.Random(seed_value)
        n = 0
        try:
            while not finished.is_set():
                n += 1
                with app.app_context(), db.session_scope() as s:
                    if n % 3:  # overwrite an existing row in place: the rotation must not put the old value back
                        contact_id = rnd.choice(sorted(before))
                        contact = s.get(ControllerContact, contact_id)
                        assert contact is not None
                        value = f"w{seed_value}-{n}@live.example"
                        contact.email = value
                    else:  # a new row
                        c = make_controller(s, name=f"Live {seed_value}-{n}", dsr_contacts=[f"new{seed_value}-{n}@live.example"], domains=[])
                        s.flush()
                        contact_id, value = c.contacts[0].id, f"new{seed_value}-{n}@live.example"
                with lock:
                    expected[contact_id] = value
                    if rotating.is_set():
                        writes_during[0] += 1
                time.sleep(0.002)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    try:
        # When the rotation runs in small batches while they write
        with app.app_context():
            rotating.set()
            result = rotation.run(db.session_scope, by=TEST_PRINCIPAL, clock=utcnow, batch_rows=5)
    finally:
        finished.set()
        for t in threads:
            t.join()
    assert not errors, errors
    # Then every value reads back as last written, nothing is left on v1, and writes did overlap the rotation
    assert writes_during[0] > 0
    assert result.rotated >= 1
    assert addresses(app) == expected
    assert_fully_rotated(app)
    # And the old secret can go: the desk starts and reads everything without MASTER_SECRET_V1
    without_v1 = app_for(database, tmp_path / "v2b", MASTER_SECRET=V2, MASTER_KEY_VERSION="2")
    assert addresses(without_v1) == expected


def test_plain_rotate_rewraps_every_key_and_keeps_values(database: str, tmp_path: Path) -> None:
    before = seed(app_for(database, tmp_path / "v1", MASTER_SECRET=V1), 3, 2)
    app = app_for(database, tmp_path / "v2", **V2_ENV)
    with app.app_context(), db.session_scope() as s:
        assert rewrap_keys(s, by=TEST_PRINCIPAL, now=utcnow()) == 3
    with app.app_context(), db.session_scope() as s:
        assert rewrap_keys(s, by=TEST_PRINCIPAL, now=utcnow()) == 0
        assert {v.version: v.data_keys for v in key_status(s).versions} == {1: 0, 2: 3}
    assert addresses(app_for(database, tmp_path / "v2b", MASTER_SECRET=V2, MASTER_KEY_VERSION="2")) == before


def _desk_env(url: str, folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASTER_", "DESK_", "DATABASE_URL"))}
    env.update(V2_ENV, DATABASE_URL=url, DESK_INSTANCE_PATH=str(folder), SECRET_KEY="k" * 40)
    return env


def _rotate_process(url: str, folder: Path, *, capture: bool = False) -> subprocess.Popen[bytes]:
    env = _desk_env(url, folder)
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "keys", "rotate", "--reencrypt", "--batch-size", "3"]
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=out)


def test_kill_9_mid_rotation_then_rerun_finishes(database: str, tmp_path: Path) -> None:
    # Given 300 encrypted values under master v1
    before = seed(app_for(database, tmp_path / "v1", MASTER_SECRET=V1), 100, 3)
    watcher = create_engine(normalise_database_url(database))
    rnd = random.Random(7)
    interrupted = 0
    try:
        # When `keys rotate --reencrypt` is killed with SIGKILL at random points, three times
        for _attempt in range(3):
            proc = _rotate_process(database, tmp_path / "instance")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                with watcher.connect() as conn:
                    if conn.execute(text("SELECT COUNT(*) FROM job_state WHERE name = :n"), {"n": rotation.JOB}).scalar():
                        break
                time.sleep(0.01)
            time.sleep(rnd.uniform(0, 0.15))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            if proc.returncode == -signal.SIGKILL:
                with watcher.connect() as conn:
                    interrupted += conn.execute(text("SELECT COUNT(*) FROM job_state WHERE name = :n"), {"n": rotation.JOB}).scalar() or 0
        # Then a rerun finishes the job
        final = _rotate_process(database, tmp_path / "instance", capture=True)
        out, err = final.communicate(timeout=120)
        assert final.returncode == 0, err.decode()
        assert b"re-encryption finished" in out
    finally:
        watcher.dispose()
    assert interrupted >= 1, "no kill landed mid-rotation"
    # And every value decrypts to what it was: none lost, none encrypted twice
    app = app_for(database, tmp_path / "v2", **V2_ENV)
    assert addresses(app) == before
    assert_fully_rotated(app)
    with app.app_context(), db.session_scope() as s:
        assert s.scalar(select(Controller.id).where(Controller.name == "Rot 0")) is not None


def _job_started(watcher: Any, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        with watcher.connect() as conn:
            if conn.execute(text("SELECT COUNT(*) FROM job_state WHERE name = :n"), {"n": rotation.JOB}).scalar():
                return True
        time.sleep(0.01)
    return False


def test_a_second_rotation_is_refused_while_one_runs_and_changes_nothing(database: str, tmp_path: Path) -> None:
    # Given values under master v1, and another `keys rotate` holding the rotation lock
    before = seed(app_for(database, tmp_path / "v1", MASTER_SECRET=V1), 3, 2)
    app = app_for(database, tmp_path / "instance", **V2_ENV)
    with app.app_context():
        holder = ProcessLock(db.engine, advisory_key("keys rotate"), tmp_path / "instance" / "keys-rotate.lock")
        assert holder.acquire()
        try:
            # When the operator starts a second one
            second = _rotate_process(database, tmp_path / "instance", capture=True)
            out, err = second.communicate(timeout=120)
            # Then it is refused in one line, and no key, value or cursor moved
            assert second.returncode == 1, out.decode() + err.decode()
            assert "another keys rotate is running; nothing was changed" in err.decode()
            with db.session_scope() as s:
                assert {v.version: v.data_keys for v in key_status(s).versions} == {1: 3, 2: 0}
                assert s.execute(text("SELECT COUNT(*) FROM job_state WHERE name = :n"), {"n": rotation.JOB}).scalar() == 0
        finally:
            holder.release()
    # And once the first has finished, the next run goes through
    third = _rotate_process(database, tmp_path / "instance", capture=True)
    out, err = third.communicate(timeout=120)
    assert third.returncode == 0, err.decode()
    assert addresses(app) == before
    assert_fully_rotated(app)


def test_ctrl_c_reports_where_the_rotation_stopped_and_a_rerun_resumes(database: str, tmp_path: Path) -> None:
    # Given 300 values under master v1 and a running `keys rotate --reencrypt`
    before = seed(app_for(database, tmp_path / "v1", MASTER_SECRET=V1), 100, 3)
    watcher = create_engine(normalise_database_url(database))
    try:
        proc = _rotate_process(database, tmp_path / "instance", capture=True)
        assert _job_started(watcher, proc), "the rotation never started"
        # When the operator presses Ctrl-C
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        watcher.dispose()
    if proc.returncode == 0:
        pytest.fail("the rotation finished before Ctrl-C landed: seed more values")
    # Then it says where it stopped and how to resume, with the shell's exit status for SIGINT
    assert proc.returncode == 130, err.decode()
    assert "stopping the re-encryption after the current batch" in err.decode()
    assert re.search(r"stopped: pass 1, \d+ of \d+ columns done, .*values re-encrypted so far; run keys rotate --reencrypt again to resume", err.decode())
    # And `keys status` shows the saved cursor
    status = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "keys", "status"],
        cwd=REPO,
        env=_desk_env(database, tmp_path / "instance"),
        capture_output=True,
        check=True,
    )
    assert b"re-encryption under way or stopped: pass 1" in status.stdout
    # And a rerun finishes the job with every value intact
    final = _rotate_process(database, tmp_path / "instance", capture=True)
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0 and b"(resumed)" in out, err.decode()
    app = app_for(database, tmp_path / "v2", **V2_ENV)
    assert addresses(app) == before
    assert_fully_rotated(app)


def test_status_keeps_the_old_secret_while_it_signs_the_newest_audit_checkpoint(database: str, tmp_path: Path) -> None:
    # Given a desk on master v1 that signed an audit checkpoint
    v1 = app_for(database, tmp_path / "instance", MASTER_SECRET=V1)
    seed(v1, 1, 1)
    assert v1.test_cli_runner().invoke(args=["audit", "checkpoint"]).exit_code == 0
    # When the operator moves to v2 and re-wraps every data key
    v2 = app_for(database, tmp_path / "instance", **V2_ENV)
    runner = v2.test_cli_runner()
    assert runner.invoke(args=["keys", "rotate"]).exit_code == 0
    # Then no data key needs v1 any more, but the newest checkpoint does: V1 may not go yet
    line = next(x for x in runner.invoke(args=["keys", "status"]).output.splitlines() if x.startswith("v1\t"))
    assert "data keys 0" in line and "MASTER_SECRET_V1 still signs the newest audit checkpoint: run audit checkpoint" in line
    # When a checkpoint is signed under v2
    assert runner.invoke(args=["audit", "checkpoint"]).exit_code == 0
    # Then V1 may be removed, and `audit verify` passes without it
    line = next(x for x in runner.invoke(args=["keys", "status"]).output.splitlines() if x.startswith("v1\t"))
    assert "MASTER_SECRET_V1 may be removed" in line
    without_v1 = app_for(database, tmp_path / "instance", MASTER_SECRET=V2, MASTER_KEY_VERSION="2")
    verified = without_v1.test_cli_runner().invoke(args=["audit", "verify"])
    assert verified.exit_code == 0, verified.output
