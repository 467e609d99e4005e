"""Requests per second of the controllers list page with 1,000 controllers, gunicorn on loopback.

    .venv/bin/python bench/controllers_page.py [--controllers 1000] [--duration 15]

Creates a fresh Postgres database (dropped afterwards), migrates it, registers
1,000 controllers through the service (contacts and domains, as the desk stores
them), starts gunicorn with config/gunicorn.py (2 sync workers) in production
mode on a free loopback port, logs in a staff member (password, then the
TOTP code, as a person would), checks that the page answers 200 with its 50
rows, then runs `wrk -t2 -c16 -d15s --latency` against `/controllers/`
(page 1 of 20: the list is paginated at 50 rows).

Prints requests/s, p50 and p99 latency, the SQL statements one page costs, and
the ratio to the ceiling in shared/PERFORMANCE.md (Flask + one ORM 50-row query
on Postgres, gunicorn 2 sync workers: 653 rps). Needs wrk (scripts/system-packages).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import WrkResult, enrol_staff, gunicorn, login_cookie, production_desk, recorded_statements, require_wrk, run_wrk  # noqa: E402 - after the sys.path line above (run as a script)

CEILING_RPS = 653  # shared/PERFORMANCE.md: the same page shape + one ORM 50-row query on Postgres


def seed(app: Any, count: int) -> None:
    """`count` controllers with a DSR and a breach contact and two domains each, through the service."""
    from app.controllers.service import ControllerInput, create_controller
    from app.db import utcnow
    from app.extensions import db
    from app.principal import Principal

    by = Principal.system("bench")
    with app.app_context(), db.session_scope() as session:
        for n in range(1, count + 1):
            data = ControllerInput(
                name=f"Bench Controller {n:04d} GmbH",
                dsr_contacts=[f"dpo{n}@bench{n}.example"],
                breach_contacts=[f"security{n}@bench{n}.example"],
                domains=[f"bench{n}.example", f"shop.bench{n}.example"],
            )
            create_controller(session, data, by=by, now=utcnow())


def statements_per_page(app: Any, cookie: str) -> int:
    """How many SQL statements one GET /controllers/ runs (N+1 queries show up here)."""
    client = app.test_client()
    for pair in cookie.split("; "):
        name, _, value = pair.partition("=")
        client.set_cookie(name, value)
    with recorded_statements(app) as seen:
        client.get("/controllers/")  # warm caches (keys, templates)
        seen.clear()
        response = client.get("/controllers/")
        assert response.status_code == 200, response.status_code
    return len(seen)


def serve_and_load(target: str, env: dict[str, str], cookie: str | None, duration: int, log_path: Path) -> WrkResult:
    """Start gunicorn (config/gunicorn.py) on `target`, check the page has its 50 rows, run wrk, stop it."""
    with gunicorn(target, env, log_path) as server:
        status, page = server.get_when_up("/controllers/", cookie)
        rows = len(re.findall(r"<tr[\s>]", page)) - 1  # minus the header row
        if status != 200 or rows != 50:
            raise SystemExit(f"{target}: the page is not what a staff member sees: HTTP {status}, {rows} rows")
        result = run_wrk(server.base + "/controllers/", cookie, duration)
    result.check(target)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--controllers", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=15, help="seconds of load")
    args = parser.parse_args()
    require_wrk()

    from app.extensions import db

    with production_desk() as desk:
        app = desk.app
        started = time.monotonic()
        seed(app, args.controllers)
        print(f"seeded {args.controllers} controllers in {time.monotonic() - started:.1f} s")
        cookie = login_cookie(app, enrol_staff(app, "bench.admin@desk.example", "admin"))
        print("login: staff session cookie (admin, password + TOTP)")
        statements = statements_per_page(app, cookie)
        with app.app_context():
            db.engine.dispose()
        desk_result = serve_and_load("wsgi:app", desk.env, cookie, args.duration, desk.instance / "gunicorn.log")
        ceiling_env = {**desk.env, "CEILING_DATABASE_URL": app.config["DATABASE_URL"]}
        ceiling = serve_and_load("bench.ceiling_app:app", ceiling_env, None, args.duration, desk.instance / "ceiling.log")

    load = os.getloadavg()[0]
    print(f"page: /controllers/ page 1 of {-(-args.controllers // 50)} (50 rows), {statements} SQL statements per request")
    print("server: gunicorn -c config/gunicorn.py wsgi:app (2 sync workers, access log on), DESK_ENV=production, Postgres on 127.0.0.1")
    print(f"load: wrk -t2 -c16 -d{args.duration}s --latency -H Cookie:<staff session> <url>")
    print(f"requests/s: {desk_result.rps:.0f}")
    print(f"latency p50: {desk_result.p50:.1f} ms  p99: {desk_result.p99:.1f} ms")
    if desk_result.socket_errors:
        print(f"wrk socket errors (a timeout is a request unanswered after wrk's 2 s): {desk_result.socket_errors}")
    print(f"ratio to the ceiling in PERFORMANCE.md ({CEILING_RPS} rps): {desk_result.rps / CEILING_RPS:.2f}")
    print(
        f"same-run ceiling (bench/ceiling_app.py, Flask + one ORM 50-row query, same gunicorn config): {ceiling.rps:.0f} rps, "
        f"p99 {ceiling.p99:.1f} ms; ratio {desk_result.rps / ceiling.rps:.2f}"
    )
    print(f"machine load average at the end: {load:.1f} (2 cores)")


if __name__ == "__main__":
    main()
