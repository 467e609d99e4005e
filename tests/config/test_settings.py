"""Configuration from the environment: production refuses missing secrets, dev generates them once."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from config.settings import ConfigError, DevSecretsWarning, config_from_env, normalise_database_url, parse_bind


def prod_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "DESK_ENV": "production",
        "DESK_INSTANCE_PATH": str(tmp_path),
        "SECRET_KEY": "s" * 40,
        "MASTER_SECRET": "m" * 40,
        "DATABASE_URL": "postgresql://desk@127.0.0.1:5432/desk",
    }
    env.update(extra)
    return env


@pytest.mark.parametrize("missing", ["SECRET_KEY", "MASTER_SECRET", "DATABASE_URL"])
def test_production_refuses_to_start_without_a_secret_and_names_it(tmp_path: Path, missing: str) -> None:
    env = prod_env(tmp_path)
    del env[missing]
    with pytest.raises(ConfigError, match=missing):
        config_from_env(env)
    assert not (tmp_path / "secrets.env").exists()


def test_production_takes_secrets_from_the_environment(tmp_path: Path) -> None:
    settings = config_from_env(prod_env(tmp_path))
    assert settings["SECRET_KEY"] == "s" * 40
    assert settings["DATABASE_URL"].startswith("postgresql+psycopg://")
    assert settings["SESSION_COOKIE_SECURE"] is True


def test_embedded_default_generates_secrets_once_owner_only(tmp_path: Path) -> None:
    env = {"DESK_INSTANCE_PATH": str(tmp_path)}
    with pytest.warns(DevSecretsWarning):
        first = config_from_env(env)
    path = tmp_path / "secrets.env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = config_from_env(env)  # no warning the second time: filterwarnings=error would fail
    assert first["SECRET_KEY"] == second["SECRET_KEY"]
    assert first["MASTER_SECRET"] == second["MASTER_SECRET"]
    assert len(first["MASTER_SECRET"]) >= 32
    assert first["DATABASE_URL"] == f"sqlite:///{tmp_path / 'desk.sqlite3'}"
    assert first["BIND"] == "127.0.0.1:5000"


@pytest.mark.parametrize(
    "url",
    ["not a url", "mysql://root@localhost/desk", "sqlite://", "sqlite:///:memory:", "://nothing"],
)
def test_malformed_or_unsupported_database_url_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        normalise_database_url(url)


def test_usual_database_url_forms_are_accepted() -> None:
    assert normalise_database_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert normalise_database_url("postgresql://postgres@127.0.0.1:5432/desk") == ("postgresql+psycopg://postgres@127.0.0.1:5432/desk")
    assert normalise_database_url("postgres://u:p@h/d").startswith("postgresql+psycopg://u:p@h")


@pytest.mark.parametrize("url", ["http://broker", "redis", "kafka://x"])
def test_malformed_broker_url_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match="DRAMATIQ_BROKER_URL"):
        config_from_env(prod_env(tmp_path, DRAMATIQ_BROKER_URL=url))


@pytest.mark.parametrize("bind", ["5000", "host:", ":5000", "host:99999", "host:http"])
def test_bad_bind_is_refused(bind: str) -> None:
    with pytest.raises(ConfigError, match="BIND"):
        parse_bind(bind)


def test_unknown_desk_env_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DESK_ENV"):
        config_from_env({"DESK_ENV": "staging", "DESK_INSTANCE_PATH": str(tmp_path)})


def test_the_app_takes_the_broker_namespace_the_worker_process_reads(tmp_path: Path) -> None:
    # A worker started with DRAMATIQ_NAMESPACE consumes that namespace; the app it builds must send there too.
    assert config_from_env(prod_env(tmp_path, DRAMATIQ_NAMESPACE="desk-blue"))["DRAMATIQ_NAMESPACE"] == "desk-blue"
    assert config_from_env(prod_env(tmp_path))["DRAMATIQ_NAMESPACE"] is None


def test_the_inbound_size_limits_come_from_the_environment(tmp_path: Path) -> None:
    # The MTA's message_size_limit is set against these (docs/operations.md, issue 15 item 8).
    settings = config_from_env(prod_env(tmp_path, ATTACHMENT_MAX_BYTES="1000", MAIL_MAX_BYTES="5000"))
    assert (settings["ATTACHMENT_MAX_BYTES"], settings["MAIL_MAX_BYTES"]) == (1000, 5000)
    assert config_from_env(prod_env(tmp_path))["MAIL_MAX_BYTES"] is None
    with pytest.raises(ConfigError, match="MAIL_MAX_BYTES"):
        config_from_env(prod_env(tmp_path, MAIL_MAX_BYTES="lots"))


def test_the_outbox_and_health_timings_the_readme_lists_come_from_the_environment(tmp_path: Path) -> None:
    # Given an operator who sets the timings the README and docs/operations.md list as environment variables
    from app.mail.outbox_settings import OutboundSettings

    timings = {
        "OUTBOX_STALE_SECONDS": "5.5",
        "OUTBOX_RETRY_BASE_SECONDS": "30",
        "OUTBOX_MAX_ATTEMPTS": "4",
        "OUTBOX_OUTAGE_GIVE_UP_SECONDS": "86400",
        "HEALTH_WORKER_STALE_SECONDS": "45",
    }
    settings = config_from_env(prod_env(tmp_path, **timings))
    # Then the desk uses them (they were read from nowhere: the defaults applied whatever was set)
    timing = OutboundSettings.from_config({**settings, "SMTP_URL": "smtp://127.0.0.1:2525"}).timing
    assert (timing.stale_after.total_seconds(), timing.retry_base.total_seconds(), timing.max_attempts) == (5.5, 30, 4)
    assert settings["OUTBOX_OUTAGE_GIVE_UP_SECONDS"] == 86400 and settings["HEALTH_WORKER_STALE_SECONDS"] == 45
    # And unset, the computed defaults stay (the stale window follows the SMTP timeout)
    default = OutboundSettings.from_config({**config_from_env(prod_env(tmp_path)), "SMTP_URL": "smtp://127.0.0.1:2525"}).timing
    assert default.max_attempts == 12 and default.stale_after.total_seconds() > 5


@pytest.mark.parametrize(
    ("name", "value"),
    [("OUTBOX_MAX_ATTEMPTS", v) for v in ("0", "-5", "soon", "1.5", "1e3", "101", "99999999999999999999")]
    + [("OUTBOX_STALE_SECONDS", v) for v in ("0", "-5", "soon", "inf", "nan", "99999999999999999999", "1e300")]
    + [("OUTBOX_RETRY_BASE_SECONDS", "99999999999999999999"), ("OUTBOX_OUTAGE_GIVE_UP_SECONDS", "1e300")]
    + [("HEALTH_WORKER_STALE_SECONDS", v) for v in ("3", "99999999999999999999")],
)
def test_a_bad_timing_is_refused_with_its_name(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        config_from_env(prod_env(tmp_path, **{name: value}))


def test_a_timing_within_its_range_is_taken_as_written(tmp_path: Path) -> None:
    settings = config_from_env(prod_env(tmp_path, OUTBOX_STALE_SECONDS=" 7 ", OUTBOX_MAX_ATTEMPTS="100", HEALTH_WORKER_STALE_SECONDS="30"))
    assert (settings["OUTBOX_STALE_SECONDS"], settings["OUTBOX_MAX_ATTEMPTS"], settings["HEALTH_WORKER_STALE_SECONDS"]) == (7.0, 100, 30.0)
