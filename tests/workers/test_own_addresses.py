"""Issue 15 item 9: the desk's own addresses are checked at start-up with the outbox's rules."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from flask import Flask

from app.mail.outbox_settings import OwnAddressInvalid, check_own_addresses
from config.settings import REPO_ROOT
from tests.workers.support import process_env


def test_production_refuses_to_start_with_a_privacy_address_the_outbox_would_refuse(committed_app: Flask) -> None:
    env = process_env(committed_app, DESK_ENV="production", PRIVACY_ADDRESS="privacy@desk.test", SUPPORT_ADDRESS="support@desk.example")
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "status"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: PRIVACY_ADDRESS is not an address the outbox can send from")
    assert "Traceback" not in result.stderr


def test_development_warns_and_the_embedded_default_passes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    assert check_own_addresses({"DESK_ENV": "development", "PRIVACY_ADDRESS": "privacy@desk.localhost", "SUPPORT_ADDRESS": "support@desk.localhost"}) == []
    problems = check_own_addresses({"DESK_ENV": "development", "PRIVACY_ADDRESS": "privacy@desk.test"})
    assert len(problems) == 1 and problems[0].startswith("PRIVACY_ADDRESS") and "PRIVACY_ADDRESS" in caplog.text
    with pytest.raises(OwnAddressInvalid, match="^SUPPORT_ADDRESS"):
        check_own_addresses({"DESK_ENV": "production", "PRIVACY_ADDRESS": "privacy@desk.example", "SUPPORT_ADDRESS": "support@desk.localhost"})
    assert check_own_addresses({"DESK_ENV": "production", "PRIVACY_ADDRESS": "privacy@desk.example"}) == []
