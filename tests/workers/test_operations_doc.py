"""Issue 15 item 6: docs/operations.md ships the units, and the worker command it documents restarts a killed child.

The workers unit's ExecStart is read from the document and run (with this
checkout's Python) against the suite's Redis broker: one worker process is
killed with SIGKILL, the supervisor starts another, and the pool keeps taking
messages.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import dramatiq
import pytest
from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.jobs.models import JobState
from config.settings import REPO_ROOT
from tests import NAMESPACE
from tests.databases import TEST_BROKER_URL
from tests.workers.smtp_support import wait_for
from tests.workers.support import process_env
from workers import maintenance

DOC = REPO_ROOT / "docs" / "operations.md"


def unit(name: str) -> configparser.ConfigParser:
    """The `[Unit]/[Service]/[Install]` file shown under `/etc/systemd/system/<name>` in the document."""
    text = DOC.read_text()
    found = re.search(rf"`/etc/systemd/system/{re.escape(name)}`[^\n]*\n+```ini\n(.*?)```", text, re.S)
    assert found, f"{name} is not in docs/operations.md"
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string(found.group(1))
    return parser


@pytest.mark.parametrize("name", ["dsr-desk-web.service", "dsr-desk-workers.service", "dsr-desk-scheduler.service", "dsr-desk-lmtp.service"])
def test_every_unit_restarts_always_as_a_non_root_user_with_the_environment_file(name: str) -> None:
    service = unit(name)["Service"]
    assert service["Restart"] == "always" and service["User"] not in ("", "root") and service["EnvironmentFile"] == "/etc/dsr-desk/env"


def test_the_document_gives_the_tls_floor_and_hsts_for_the_reverse_proxy() -> None:
    text = DOC.read_text()
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in text and "Strict-Transport-Security" in text


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _heartbeat(app: Flask) -> object:
    with app.app_context(), db.session_scope() as session:
        row = session.scalars(select(JobState).where(JobState.name == maintenance.HEARTBEAT)).one_or_none()
        return row.updated_at if row is not None else None


@pytest.mark.skipif(not TEST_BROKER_URL, reason="a worker process of its own needs a real broker (TEST_BROKER_URL)")
def test_the_documented_worker_command_restarts_a_worker_killed_with_sigkill(committed_app: Flask, tmp_path: Path) -> None:
    command = shlex.split(unit("dsr-desk-workers.service")["Service"]["ExecStart"])
    assert command[1:4] == ["-m", "workers.supervise", "--processes"]
    command[0] = sys.executable  # this checkout's interpreter instead of /srv/desk/.venv/bin/python
    env = process_env(committed_app, DRAMATIQ_BROKER_URL=TEST_BROKER_URL or "", DRAMATIQ_NAMESPACE=NAMESPACE)
    dramatiq.get_broker().flush_all()
    log = (tmp_path / "workers.log").open("w")
    supervisor = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        # Given the two pools of the documented command are up (each a dramatiq main with one worker process)
        pools = wait_for(lambda: len(_children(supervisor.pid)) == 2 and _children(supervisor.pid), timeout=60)
        workers = wait_for(lambda: [w for p in pools for w in _children(p)] if all(_children(p) for p in pools) else None, timeout=60)
        # When one worker process is killed with SIGKILL
        os.kill(workers[0], signal.SIGKILL)
        # Then the supervisor starts a new pool in its place, and the workers still take messages
        wait_for(lambda: len(set(_children(supervisor.pid)) - set(pools)) >= 1 and len(_children(supervisor.pid)) == 2, timeout=60)
        before = _heartbeat(committed_app)
        time.sleep(0.05)
        for _ in range(4):
            maintenance.heartbeat.send()
        wait_for(lambda: _heartbeat(committed_app) not in (None, before), timeout=60)
    finally:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(60)
        log.close()
    assert supervisor.returncode == 0
    assert "restarting" in (tmp_path / "workers.log").read_text()
