"""A day's work in the browser, step by step: each step is a screenshot and an accessibility check.

`Journey(page, "agent")` keeps the screenshots of one role's day in
`test-artifacts/screens/<database>/<role>/NN-<step>.png` (CI keeps the folder; git ignores it), and
`journey.step("queue")` saves the page as it is and runs axe-core on it (the copy bundled in
axe-playwright-python, injected into the page: nothing is loaded from the internet). A serious or
critical violation fails the test with axe's own report of where it is.
"""

from __future__ import annotations

import re
from pathlib import Path

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screens"
# WCAG 2.0 / 2.1, levels A and AA, and axe's best practices; what a violation weighs is axe's own `impact`.
AXE_OPTIONS = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]}, "resultTypes": ["violations"]}
BLOCKING = ("serious", "critical")
_AXE = Axe()


def axe_violations(page: Page) -> list[dict[str, object]]:
    """The serious and critical axe-core violations of the page as it is now."""
    results = _AXE.run(page, options=AXE_OPTIONS)
    return [v for v in results.response["violations"] if v.get("impact") in BLOCKING]


def describe(violations: list[dict[str, object]]) -> str:
    """Each violation with the elements it was found on (for the assertion message)."""
    lines = []
    for v in violations:
        nodes = v.get("nodes") or []
        where = "; ".join(str(n.get("html", ""))[:160] for n in nodes[:5] if isinstance(n, dict)) if isinstance(nodes, list) else ""
        lines.append(f"{v.get('id')} ({v.get('impact')}): {v.get('help')} -- {where}")
    return "\n".join(lines)


class Journey:
    """One role's walk through the desk: numbered screenshots and an axe check per step."""

    def __init__(self, page: Page, role: str, *, database: str = "sqlite") -> None:
        self.page = page
        self.folder = ARTIFACTS / database / role
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob("*.png"):
            old.unlink()
        self.count = 0
        self.shots: list[Path] = []

    def step(self, name: str) -> Path:
        """Screenshot the page as `NN-name.png` and fail on any serious or critical accessibility violation."""
        self.count += 1
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        path = self.folder / f"{self.count:02d}-{slug}.png"
        self.page.wait_for_load_state("load")
        self.page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)
        violations = axe_violations(self.page)
        assert not violations, f"step {name!r} ({self.page.url}) has accessibility violations:\n{describe(violations)}"
        return path
