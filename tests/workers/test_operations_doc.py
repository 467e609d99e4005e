"""Issue 15 item 6: docs/operations.md ships the units, and the worker command it documents restarts a killed child.

The workers unit's ExecStart is read from the document and run (with this
checkout's Python) against the suite's Redis broker: one worker process is
killed with SIGKILL, the supervisor starts another, and the pool keeps taking
messages.
"""

from __future__ import annotations

import configparser
import json
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


# ---- the environment file, the web unit's command, migrations and the checkpoint folder (issue 15 item 6) ----------


def _pipe_wrapper() -> str:
    from tests.mail.postfix import doc_config

    return doc_config().wrapper


TRICKY = {
    "RETENTION_RUN_AT": "30 3 * * *",
    "SMTP_URL": "smtp://desk:p&ss@relay.example:587?starttls=1&timeout=10",
    "SECRET_KEY": "a$HOME`id`$(id)b'c\"d *",
    "EMPTY": "",
    "WITH_EQUALS": "x=y=z",
}


def _run_wrapper(tmp_path: Path, env_text: str) -> subprocess.CompletedProcess[str]:
    """The documented wrapper, run by /bin/sh on `env_text`, printing the environment it would give `mail ingest`."""
    env_file = tmp_path / "env"
    env_file.write_text(env_text)
    script = _pipe_wrapper().replace("/etc/dsr-desk/env", str(env_file)).replace("cd /srv/desk", f"cd {tmp_path}")
    script = re.sub(r"^exec .*flask --app wsgi mail ingest.*$", 'exec python3 -c "import json, os; print(json.dumps(dict(os.environ)))"', script, flags=re.M)
    (tmp_path / "wrapper").write_text(script)
    return subprocess.run(["/bin/sh", str(tmp_path / "wrapper")], capture_output=True, text=True, env={"PATH": os.environ["PATH"]}, timeout=30)


def test_the_pipe_wrapper_reads_the_environment_file_as_systemd_does(tmp_path: Path) -> None:
    from tests.mail.postfix import read_env_file

    # Given an environment file with a cron time, an SMTP URL with &, a secret with $ and backquotes, comments
    text = "# the desk\n\n" + "".join(f"{k}={v}\n" for k, v in TRICKY.items()) + "; another comment\nLAST=no newline"
    (tmp_path / "systemd").write_text(text)
    # When the documented wrapper reads it
    result = _run_wrapper(tmp_path, text)
    # Then mail ingest gets every value literally, as systemd's EnvironmentFile gives it to the units
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    assert {k: got.get(k) for k in [*TRICKY, "LAST"]} == {**TRICKY, "LAST": "no newline"}
    assert {k: v for k, v in read_env_file(tmp_path / "systemd").items() if not k.startswith(";")} == {**TRICKY, "LAST": "no newline"}


@pytest.mark.parametrize("line", ["not a setting", "BAD-KEY=1", "=value"])
def test_a_line_the_wrapper_cannot_read_defers_the_message(tmp_path: Path, line: str) -> None:
    result = _run_wrapper(tmp_path, f"DESK_ENV=production\n{line}\n")
    assert result.returncode == 78  # EX_CONFIG: Postfix defers the message, the operator fixes the file


def _exec_starts(name: str) -> list[str]:
    text = DOC.read_text()
    found = re.search(rf"`/etc/systemd/system/{re.escape(name)}`[^\n]*\n+```ini\n(.*?)```", text, re.S)
    assert found, f"{name} is not in docs/operations.md"
    return re.findall(r"^ExecStart=(.*)$", found.group(1), re.M)


def test_the_schema_is_migrated_and_granted_before_the_desks_processes_start() -> None:
    starts = _exec_starts("dsr-desk-migrate.service")
    assert [s.split("--app wsgi ")[1].split()[:2] for s in starts] == [["db", "upgrade"], ["db", "grant"]]
    assert unit("dsr-desk-migrate.service")["Service"]["Type"] == "oneshot"
    for name in ("dsr-desk-web.service", "dsr-desk-workers.service", "dsr-desk-scheduler.service"):
        section = unit(name)["Unit"]
        assert "dsr-desk-migrate.service" in section["Requires"] and "dsr-desk-migrate.service" in section["After"]


def test_the_processes_that_sign_checkpoints_may_write_the_documented_checkpoint_folder() -> None:
    found = re.search(r"^echo 'AUDIT_CHECKPOINT_PATH=(/\S+)'", DOC.read_text(), re.M)
    assert found, "docs/operations.md does not say where AUDIT_CHECKPOINT_PATH goes"
    folder = str(Path(found.group(1)).parent)
    assert not folder.startswith("/srv/desk/instance")  # README: outside the instance folder
    for name in ("dsr-desk-workers.service", "dsr-desk-scheduler.service"):
        service = unit(name)["Service"]
        assert service["ProtectSystem"] == "strict" and folder in service["ReadWritePaths"].split()


def test_the_web_unit_runs_the_readmes_gunicorn_config_with_its_control_socket_where_it_may_write(committed_app: Flask, tmp_path: Path) -> None:
    service = unit("dsr-desk-web.service")["Service"]
    command = shlex.split(service["ExecStart"])
    assert command[1:3] == ["-c", "config/gunicorn.py"] and command[-1] == "wsgi:app"
    # ProtectSystem=strict leaves writable only ReadWritePaths and the unit's RuntimeDirectory (/run/<name>)
    writable = [*service["ReadWritePaths"].split(), f"/run/{service['RuntimeDirectory']}"]
    socket_path = command[command.index("--control-socket") + 1]
    assert any(socket_path.startswith(folder + "/") for folder in writable), socket_path
    # Run it: the control socket goes where the unit says, nothing into a read-only $HOME
    run, home = tmp_path / "run", tmp_path / "home"
    run.mkdir()
    home.mkdir()
    command[0] = str(Path(sys.executable).parent / "gunicorn")
    command[command.index("--control-socket") + 1] = socket_path.replace(f"/run/{service['RuntimeDirectory']}", str(run))
    port = _free_port()
    env = process_env(committed_app, BIND=f"127.0.0.1:{port}", HOME=str(home), WEB_CONCURRENCY="1")
    log = (tmp_path / "web.log").open("w")
    web = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _answers(port), timeout=60)
        wait_for(lambda: (run / Path(socket_path).name).exists(), timeout=30)
    finally:
        web.send_signal(signal.SIGTERM)
        web.wait(30)
        log.close()
    assert not (home / ".gunicorn").exists()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
