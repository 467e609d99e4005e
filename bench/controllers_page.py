"""Requests per second of the controllers list page with 1,000 controllers, gunicorn on loopback.

    .venv/bin/python bench/controllers_page.py [--controllers 1000] [--duration 15]

Creates a fresh Postgres database (dropped afterwards), migrates it, registers
1,000 controllers through the service (contacts and domains, as the desk stores
them), starts gunicorn with config/gunicorn.py (2 sync workers) in production
mode on a free loopback port, logs in a staff member when the desk has logins
(password, then the TOTP code, as a person would), checks that the page answers
200 with its 50 rows, then runs `wrk -t2 -c16 -d15s --latency` against
`/controllers/` (page 1 of 20: the list is paginated at 50 rows).

Prints requests/s, p50 and p99 latency, the SQL statements one page costs, and
the ratio to the ceiling in shared/PERFORMANCE.md (Flask + one ORM 50-row query
on Postgres, gunicorn 2 sync workers: 653 rps). Needs wrk (scripts/system-packages).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

CEILING_RPS = 653  # shared/PERFORMANCE.md: the same page shape + one ORM 50-row query on Postgres
ADMIN_URL = os.environ.get("BENCH_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """A new database on the server of ADMIN_URL, dropped on the way out."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from config.settings import normalise_database_url

    admin_url = normalise_database_url(ADMIN_URL, variable="BENCH_DATABASE_URL")
    name = f"dsr_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def desk_environment(database_url: str, instance: Path) -> dict[str, str]:
    """Production mode: every secret from the environment, nothing embedded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "DRAMATIQ_", "MASTER_SECRET"))}
    env.update(
        DESK_ENV="production",
        DATABASE_URL=database_url,
        SECRET_KEY=secrets.token_urlsafe(32),
        MASTER_SECRET=secrets.token_urlsafe(32),
        MASTER_KEY_VERSION="1",
        DESK_INSTANCE_PATH=str(instance),
        WEB_CONCURRENCY="2",
    )
    return env


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


def _cookies(response: Any, jar: dict[str, str]) -> None:
    for header in response.headers.getlist("Set-Cookie"):
        name, _, rest = header.partition("=")
        jar[name.strip()] = rest.split(";", 1)[0]


def staff_cookie(app: Any) -> str | None:
    """A Cookie header of a fully logged-in admin, or None while the desk has no logins."""
    try:
        from app.auth import mfa, service
    except ImportError:
        return None
    from app.db import utcnow
    from app.extensions import db
    from app.principal import Principal

    email, password = "bench.admin@desk.example", service.random_password()
    policy = service.AuthPolicy.from_config(app.config)
    # Enrol with the code of a past time step, so the login's current code is not a replay.
    enrolled_at = utcnow() - dt.timedelta(seconds=90)
    with app.app_context(), db.session_scope() as session:
        user = service.create_user(session, email, role="admin", password=password, by=Principal.system("bench"), now=enrolled_at, policy=policy)
        secret = service.begin_enrolment(session, user, now=enrolled_at)
        service.confirm_enrolment(session, user, mfa.code_at(secret, enrolled_at), now=enrolled_at, policy=policy)
    client = app.test_client()
    jar: dict[str, str] = {}
    step1 = client.post("/login", data={"email": email, "password": password})
    _cookies(step1, jar)
    step2 = client.post("/login/mfa", data={"code": mfa.code_at(secret, utcnow())})
    _cookies(step2, jar)
    if step1.status_code != 302 or step2.status_code != 302:
        raise SystemExit(f"bench login failed: /login {step1.status_code}, /login/mfa {step2.status_code}")
    return "; ".join(f"{k}={v}" for k, v in jar.items())


def statements_per_page(app: Any, cookie: str | None) -> int:
    """How many SQL statements one GET /controllers/ runs (N+1 queries show up here)."""
    from sqlalchemy import event

    from app.extensions import db

    with app.app_context():
        engine = db.engine
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine, "before_cursor_execute", count)
    try:
        client = app.test_client()
        for pair in cookie.split("; ") if cookie else []:
            name, _, value = pair.partition("=")
            client.set_cookie(name, value)
        client.get("/controllers/")  # warm caches (keys, templates)
        seen.clear()
        response = client.get("/controllers/")
        assert response.status_code == 200, response.status_code
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(seen)


def get(url: str, cookie: str | None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, cookie: str | None, duration: int) -> dict[str, Any]:
    command = ["wrk", "-t2", "-c16", f"-d{duration}s", "--latency", url]
    if cookie:
        command[1:1] = ["-H", f"Cookie: {cookie}"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    failures = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": _ms(re.search(r"\s50%\s+(\S+)", out).group(1)),  # type: ignore[union-attr]
        "p99": _ms(re.search(r"\s99%\s+(\S+)", out).group(1)),  # type: ignore[union-attr]
        "non_2xx": int(failures.group(1)) if failures else 0,
        "socket_errors": errors.group(1) if errors else None,
        "raw": out,
    }


def serve_and_load(target: str, env: dict[str, str], cookie: str | None, duration: int, log_path: Path) -> dict[str, Any]:
    """Start gunicorn (config/gunicorn.py) on `target`, check the page has its 50 rows, run wrk, stop it."""
    port = free_port()
    env = {**env, "BIND": f"127.0.0.1:{port}"}
    url = f"http://127.0.0.1:{port}/controllers/"
    with log_path.open("w") as log:
        command = [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py", target]
        server = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    status, page = get(url, cookie)
                    break
                except OSError:  # refused, reset or timed out while gunicorn boots
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit(f"gunicorn {target} did not come up: " + log_path.read_text()[-2000:]) from None
                    time.sleep(0.2)
            rows = len(re.findall(r"<tr[\s>]", page)) - 1  # minus the header row
            if status != 200 or rows != 50:
                raise SystemExit(f"{target}: the page is not what a staff member sees: HTTP {status}, {rows} rows")
            result = run_wrk(url, cookie, duration)
        finally:
            server.terminate()
            server.wait(timeout=30)
    if result["non_2xx"]:
        print(result["raw"])
        raise SystemExit(f"{target}: wrk saw {result['non_2xx']} non-2xx/3xx responses")
    result["url"] = url
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--controllers", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=15, help="seconds of load")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: run `bash scripts/system-packages` (as root)")

    from app import create_app
    from app import migrations as desk_migrations
    from app.extensions import db
    from config.settings import config_from_env

    instance = Path(f"/tmp/dsr-bench-{uuid.uuid4().hex[:8]}")
    try:
        with fresh_postgres() as database_url:
            env = desk_environment(database_url, instance)
            desk_migrations.upgrade(database_url)
            # The bench's own app: same database and secrets as gunicorn's, CSRF off for the scripted login.
            settings = config_from_env(env)
            settings.update(WTF_CSRF_ENABLED=False, SESSION_COOKIE_SECURE=False)
            app = create_app(settings)
            started = time.monotonic()
            seed(app, args.controllers)
            print(f"seeded {args.controllers} controllers in {time.monotonic() - started:.1f} s")
            cookie = staff_cookie(app)
            print("login: staff session cookie (admin, password + TOTP)" if cookie else "login: none (the desk has no logins yet)")
            statements = statements_per_page(app, cookie)
            with app.app_context():
                db.engine.dispose()
            desk = serve_and_load("wsgi:app", env, cookie, args.duration, instance / "gunicorn.log")
            ceiling_env = {**env, "CEILING_DATABASE_URL": settings["DATABASE_URL"]}
            ceiling = serve_and_load("bench.ceiling_app:app", ceiling_env, None, args.duration, instance / "ceiling.log")
    finally:
        shutil.rmtree(instance, ignore_errors=True)

    load = os.getloadavg()[0]
    print(f"page: /controllers/ page 1 of {-(-args.controllers // 50)} (50 rows), {statements} SQL statements per request")
    print("server: gunicorn -c config/gunicorn.py wsgi:app (2 sync workers, access log on), DESK_ENV=production, Postgres on 127.0.0.1")
    print(f"load: wrk -t2 -c16 -d{args.duration}s --latency {'-H Cookie:<staff session> ' if cookie else ''}<url>")
    print(f"requests/s: {desk['rps']:.0f}")
    print(f"latency p50: {desk['p50']:.1f} ms  p99: {desk['p99']:.1f} ms")
    if desk["socket_errors"]:
        print(f"wrk socket errors (a timeout is a request unanswered after wrk's 2 s): {desk['socket_errors']}")
    print(f"ratio to the ceiling in PERFORMANCE.md ({CEILING_RPS} rps): {desk['rps'] / CEILING_RPS:.2f}")
    print(
        f"same-run ceiling (bench/ceiling_app.py, Flask + one ORM 50-row query, same gunicorn config): {ceiling['rps']:.0f} rps, "
        f"p99 {ceiling['p99']:.1f} ms; ratio {desk['rps'] / ceiling['rps']:.2f}"
    )
    print(f"machine load average at the end: {load:.1f} (2 cores)")


if __name__ == "__main__":
    main()
