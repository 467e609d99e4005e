"""The operator CLI: controllers create / edit / list, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from flask.testing import FlaskCliRunner

from config.settings import REPO_ROOT


def test_create_then_list_json(runner: FlaskCliRunner) -> None:
    result = runner.invoke(
        args=[
            "controllers",
            "create",
            "CLI Co",
            "--dsr-contact",
            "dpo@cli.example",
            "--breach-contact",
            "sec@cli.example",
            "--domain",
            "cli.example",
            "--identifier",
            "CLI-9",
        ]
    )
    assert result.exit_code == 0, result.output
    new_id = int(result.output.strip())
    listed = json.loads(runner.invoke(args=["controllers", "list", "--json"]).output)
    mine = next(c for c in listed if c["id"] == new_id)
    assert mine["dsr_contacts"] == ["dpo@cli.example"]
    assert mine["breach_contacts"] == ["sec@cli.example"]
    assert mine["domains"] == ["cli.example"]
    assert mine["identifiers"] == ["CLI-9"]


def test_bad_email_is_a_clear_error_and_saves_nothing(runner: FlaskCliRunner) -> None:
    before = runner.invoke(args=["controllers", "list", "--json"]).output
    result = runner.invoke(args=["controllers", "create", "Bad Co", "--dsr-contact", "not-an-email"])
    assert result.exit_code != 0
    assert "not a valid email address" in result.output
    assert runner.invoke(args=["controllers", "list", "--json"]).output == before


def test_edit_terminates_a_controller(runner: FlaskCliRunner) -> None:
    new_id = runner.invoke(args=["controllers", "create", "Edit Co", "--dsr-contact", "a@edit.example"]).output.strip()
    refused = runner.invoke(args=["controllers", "edit", new_id, "--status", "terminated"])
    assert refused.exit_code != 0 and "termination date" in refused.output
    ok = runner.invoke(args=["controllers", "edit", new_id, "--status", "terminated", "--terminated-on", "2026-12-01", "--termination-option", "delete"])
    assert ok.exit_code == 0, ok.output
    listed = json.loads(runner.invoke(args=["controllers", "list", "--json"]).output)
    mine = next(c for c in listed if c["id"] == int(new_id))
    assert (mine["status"], mine["terminated_on"], mine["termination_option"]) == ("terminated", "2026-12-01", "delete")


def run_flask(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "DESK_", "MASTER_", "SECRET_KEY"))}
    full_env.update({"DESK_INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "k" * 40, "MASTER_SECRET": "m" * 40})
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=REPO_ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_unreachable_database_is_one_line_and_non_zero(tmp_path: Path) -> None:
    result = run_flask(["controllers", "list"], {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}, tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "database is unreachable" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_malformed_database_url_is_one_line_and_non_zero(tmp_path: Path) -> None:
    result = run_flask(["controllers", "list"], {"DATABASE_URL": "mysql://x/y"}, tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == ["error: DATABASE_URL names an unsupported database 'mysql' (use sqlite or postgresql)"]


def test_malformed_broker_url_is_one_line_and_non_zero(tmp_path: Path) -> None:
    result = run_flask(["controllers", "list"], {"DRAMATIQ_BROKER_URL": "http://nope"}, tmp_path)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and "DRAMATIQ_BROKER_URL" in result.stderr


def test_unknown_cli_argument_is_an_error(tmp_path: Path) -> None:
    result = run_flask(["controllers", "list", "--bogus"], {}, tmp_path)
    assert result.returncode == 2
    assert "No such option" in result.stderr and "Traceback" not in result.stderr
