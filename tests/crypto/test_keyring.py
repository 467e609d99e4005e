"""The keyring: one secret per version, checked at startup with a one-line error naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.crypto.keyring import Keyring, UnknownKeyVersion
from config.settings import ConfigError

REPO = Path(__file__).resolve().parents[2]
A = "a" * 40
B = "b" * 40


def test_each_purpose_and_version_gets_its_own_key() -> None:
    keyring = Keyring(2, {1: A, 2: B})
    keys = {keyring.derive(p, v) for p in ("key-wrap", "blind-index", "token", "audit-checkpoint") for v in (1, 2)}
    assert len(keys) == 8 and all(len(k) == 32 for k in keys)
    assert keyring.derive("token") == keyring.derive("token", 2)


@pytest.mark.parametrize(
    ("config", "variable"),
    [
        ({"MASTER_SECRET": "short", "MASTER_KEY_VERSION": 1}, "MASTER_SECRET is shorter than 32 bytes"),
        ({"MASTER_SECRET": "", "MASTER_KEY_VERSION": 1}, "MASTER_SECRET is required"),
        ({"MASTER_SECRET": B, "MASTER_KEY_VERSION": 2, "MASTER_SECRETS_OLD": {1: "tiny"}}, "MASTER_SECRET_V1 is shorter"),
        ({"MASTER_SECRET": B, "MASTER_KEY_VERSION": 2, "MASTER_SECRETS_OLD": {1: B}}, "repeats"),
        ({"MASTER_SECRET": B, "MASTER_KEY_VERSION": 1, "MASTER_SECRETS_OLD": {2: A}}, "MASTER_SECRET_V2 is newer than MASTER_KEY_VERSION=1"),
    ],
)
def test_bad_secrets_are_config_errors_naming_the_variable(config: dict[str, object], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Keyring.from_config(config)


def test_a_version_without_its_secret_is_named_when_needed() -> None:
    keyring = Keyring(2, {2: B})
    with pytest.raises(UnknownKeyVersion, match="MASTER_SECRET_V1 is not set"):
        keyring.derive("key-wrap", 1)
    assert "b" * 10 not in repr(keyring)


def _flask(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MASTER_", "DATABASE_URL", "DESK_"))}
    base.update({"DESK_INSTANCE_PATH": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path / 'desk.sqlite3'}", "SECRET_KEY": "k" * 40})
    base.update(env)
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=REPO, env=base, capture_output=True, text=True, timeout=120)


def test_startup_errors_are_one_line_naming_the_variable(tmp_path: Path) -> None:
    # A short secret.
    short = _flask(tmp_path, "keys", "status", MASTER_SECRET="too-short")
    assert short.returncode != 0 and short.stderr.strip() == "error: MASTER_SECRET is shorter than 32 bytes"
    # A missing secret in production.
    missing = _flask(tmp_path, "keys", "status", DESK_ENV="production")
    assert missing.returncode != 0 and missing.stderr.strip() == "error: MASTER_SECRET is required when DESK_ENV=production"
    # A master version still wrapping data keys whose secret was removed.
    assert _flask(tmp_path, "db", "upgrade", MASTER_SECRET=A).returncode == 0
    assert _flask(tmp_path, "controllers", "create", "Acme", "--dsr-contact", "dpo@acme.example", MASTER_SECRET=A).returncode == 0
    retired = _flask(tmp_path, "keys", "status", MASTER_SECRET=B, MASTER_KEY_VERSION="2")
    assert retired.returncode != 0
    assert retired.stderr.strip().splitlines() == [
        "error: MASTER_SECRET_V1 is not set but master key version 1 still wraps 1 data keys (restore it, run keys rotate)"
    ]
    lowered = _flask(tmp_path, "keys", "status", MASTER_SECRET=B, MASTER_SECRET_V1=A, MASTER_KEY_VERSION="2")
    assert lowered.returncode == 0, lowered.stderr
    assert "MASTER_SECRET_V1 still needed" in lowered.stdout
