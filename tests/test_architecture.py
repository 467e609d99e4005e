"""The architecture contract (pyproject.toml `[tool.importlinter]`, docs/architecture.md) holds: a change that
imports up a layer, makes app.mail import a domain, makes a model import a service, or closes a cycle between
packages fails here, in CI, on both databases' runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_import_contract_is_kept() -> None:
    result = _lint_imports("--no-cache")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "BROKEN" not in result.stdout


def test_a_broken_contract_fails(tmp_path: Path) -> None:
    # Given a contract the tree cannot keep (the platform importing the DSR domain is what it forbids)...
    config = tmp_path / "contract.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["app"]\n\n'
        '[[tool.importlinter.contracts]]\nname = "everything is forbidden from app.db"\ntype = "forbidden"\n'
        'source_modules = ["app.dsr"]\nforbidden_modules = ["app.db"]\n'
    )
    # ...lint-imports says so and exits non-zero: the check above is not one that cannot fail.
    result = _lint_imports("--config", str(config), "--no-cache")
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
