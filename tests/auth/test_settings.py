"""Staff-access settings from the environment: bcrypt cost floor in production, session lifetimes."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import ConfigError, DevelopmentConfig, ProductionConfig

PROD = {"SECRET_KEY": "k" * 40, "MASTER_SECRET": "m" * 40, "DATABASE_URL": "postgresql://u@127.0.0.1:5432/d"}


def test_production_refuses_a_bcrypt_cost_below_12(tmp_path: Path) -> None:
    env = {**PROD, "DESK_INSTANCE_PATH": str(tmp_path)}
    assert ProductionConfig.from_env(env)["BCRYPT_COST"] == 12
    with pytest.raises(ConfigError, match="BCRYPT_COST must be between 12 and 31"):
        ProductionConfig.from_env({**env, "BCRYPT_COST": "10"})
    assert ProductionConfig.from_env({**env, "BCRYPT_COST": "13"})["BCRYPT_COST"] == 13


def test_session_lifetimes_default_and_override(tmp_path: Path) -> None:
    env = {**PROD, "DESK_INSTANCE_PATH": str(tmp_path)}
    settings = DevelopmentConfig.from_env(env)
    assert (settings["SESSION_IDLE_SECONDS"], settings["SESSION_ABSOLUTE_SECONDS"]) == (1800, 43200)
    assert DevelopmentConfig.from_env({**env, "SESSION_IDLE_SECONDS": "600"})["SESSION_IDLE_SECONDS"] == 600
    with pytest.raises(ConfigError, match="SESSION_ABSOLUTE_SECONDS"):
        DevelopmentConfig.from_env({**env, "SESSION_ABSOLUTE_SECONDS": "twelve hours"})
