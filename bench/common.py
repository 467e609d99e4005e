"""What the benchmarks share: a fresh Postgres database, the desk in production mode, gunicorn + wrk, a logged-in staff member, the ticket generator.

Imported as `bench.common` (each script puts the repository root on sys.path first).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("BENCH_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
NULL = "\\N"  # NULL in COPY's text format

# --- databases and the desk ----------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def libpq_url(database_url: str) -> str:
    """The URL for psycopg.connect: SQLAlchemy's `+psycopg` driver name removed."""
    return database_url.replace("postgresql+psycopg://", "postgresql://")


@contextmanager
def fresh_postgres(label: str = "", admin_url: str = ADMIN_URL) -> Iterator[str]:
    """A new database on the server of `admin_url` (named dsr_bench_[label_]<hex>), dropped on the way out."""
    from config.settings import normalise_database_url
    from tests.databases import server_database

    name = f"dsr_bench_{label + '_' if label else ''}{uuid.uuid4().hex[:10]}"
    with server_database(normalise_database_url(admin_url, variable="BENCH_DATABASE_URL"), name) as url:
        yield url


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
        # Production checks the desk's own addresses with the outbox's rules (the embedded *.localhost would be refused).
        PRIVACY_ADDRESS="privacy@desk.example",
        SUPPORT_ADDRESS="support@desk.example",
    )
    return env


@dataclass(frozen=True)
class Desk:
    """The desk under test: the bench's own app, the environment gunicorn gets, the database URL and the instance folder."""

    app: Any
    env: dict[str, str]
    database_url: str
    instance: Path


@contextmanager
def production_desk(**config: Any) -> Iterator[Desk]:
    """A fresh migrated Postgres database and the desk on it in production mode; database and instance folder removed afterwards."""
    from app import create_app
    from app import migrations as desk_migrations
    from app.extensions import db
    from config.settings import config_from_env

    instance = Path(f"/tmp/dsr-bench-{uuid.uuid4().hex[:8]}")
    try:
        with fresh_postgres() as database_url:
            env = desk_environment(database_url, instance)
            desk_migrations.upgrade(database_url)
            # The bench's own app: gunicorn's database and secrets, CSRF off and cookies over plain HTTP for the scripted login.
            settings = config_from_env(env)
            settings.update(WTF_CSRF_ENABLED=False, SESSION_COOKIE_SECURE=False, **config)
            app = create_app(settings)
            try:
                yield Desk(app, env, database_url, instance)
            finally:
                with app.app_context():
                    db.engine.dispose()
    finally:
        shutil.rmtree(instance, ignore_errors=True)


# --- staff and their login -----------------------------------------------------------------------


@dataclass(frozen=True)
class Staff:
    """A staff member enrolled for TOTP, with what a login needs."""

    id: int
    email: str
    password: str
    totp_secret: str


def enrol_staff(app: Any, email: str, role: str, controller_ids: Collection[int] = ()) -> Staff:
    """A staff member with a random password and confirmed TOTP, through the services (own transaction)."""
    from app.auth import login, mfa
    from app.auth import service as auth
    from app.db import utcnow
    from app.extensions import db
    from app.principal import Principal

    password = auth.random_password()
    policy = auth.AuthPolicy.from_config(app.config)
    enrolled_at = utcnow() - dt.timedelta(seconds=90)  # enrol with a past step, so the login's current code is not a replay
    with app.app_context(), db.session_scope() as session:
        user = auth.create_user(
            session, email, role=role, password=password, controller_ids=controller_ids, by=Principal.system("bench"), now=enrolled_at, policy=policy
        )
        secret = login.begin_enrolment(session, user, now=enrolled_at)
        login.confirm_enrolment(session, user, mfa.code_at(secret, enrolled_at), now=enrolled_at, policy=policy)
        return Staff(user.id, email, password, secret)


def login_cookie(app: Any, staff: Staff) -> str:
    """The Cookie header of `staff`, logged in through the real two steps (password, then the TOTP code)."""
    from app.auth import mfa
    from app.db import utcnow

    client = app.test_client()
    jar: dict[str, str] = {}
    for path, data in (("/login", {"email": staff.email, "password": staff.password}), ("/login/mfa", {"code": mfa.code_at(staff.totp_secret, utcnow())})):
        response = client.post(path, data=data)
        if response.status_code != 302:
            raise SystemExit(f"bench login failed at {path}: {response.status_code}")
        for header in response.headers.getlist("Set-Cookie"):
            name, _, rest = header.partition("=")
            jar[name.strip()] = rest.split(";", 1)[0]
    return "; ".join(f"{k}={v}" for k, v in jar.items())


# --- statements, timings, plans ------------------------------------------------------------------


@contextmanager
def recorded_statements(app: Any) -> Iterator[list[tuple[str, Any]]]:
    """Every SQL statement (with its parameters) the app's engine sends inside the block, in order."""
    from sqlalchemy import event

    from app.extensions import db

    with app.app_context():
        engine = db.engine
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def capture(app: Any, fn: Callable[[], object]) -> list[tuple[str, Any]]:
    """The SELECT statements (with parameters) `fn` executes."""
    with recorded_statements(app) as seen:
        fn()
    return [(sql, params) for sql, params in seen if sql.lstrip().upper().startswith("SELECT")]


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """(median, max) milliseconds of `runs` calls after one warm-up."""
    fn()
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples), max(samples)


def explain_all(database_url: str, statements: list[tuple[str, Any]]) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of each captured statement, compacted."""
    import psycopg

    out = []
    with psycopg.connect(libpq_url(database_url)) as conn:
        for sql, params in statements:
            rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, params).fetchall()
            out.append("  " + " ".join(sql.split())[:300])
            out.extend("    " + r[0] for r in rows)
        conn.rollback()
    return "\n".join(out)


# --- gunicorn and wrk ----------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def get(url: str, cookie: str | None) -> tuple[int, str]:
    """(status, body) of one GET, redirects not followed; `cookie` None sends no Cookie header."""
    request = urllib.request.Request(url, headers={"Cookie": cookie} if cookie is not None else {})
    try:
        with urllib.request.build_opener(_NoRedirect).open(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


@dataclass(frozen=True)
class Server:
    """A gunicorn on loopback: what it serves, its base URL, process and log file."""

    app_spec: str
    base: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def get_when_up(self, path: str, cookie: str | None) -> tuple[int, str]:
        """get() of base + path, retried while gunicorn boots (60 s at most)."""
        deadline = time.monotonic() + 60
        while True:
            try:
                return get(self.base + path, cookie)
            except OSError:  # refused, reset or timed out while gunicorn boots
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit(f"gunicorn {self.app_spec} did not come up: " + self.log_path.read_text()[-2000:]) from None
                time.sleep(0.2)


@contextmanager
def gunicorn(app_spec: str, env: dict[str, str], log_path: Path) -> Iterator[Server]:
    """`gunicorn -c config/gunicorn.py APP_SPEC` on a free loopback port, stopped on the way out."""
    port = free_port()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py", app_spec],
            cwd=REPO_ROOT,
            env={**env, "BIND": f"127.0.0.1:{port}"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield Server(app_spec, f"http://127.0.0.1:{port}", process, log_path)
        finally:
            process.terminate()
            process.wait(timeout=30)


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run reports: requests/s, latency percentiles in ms, failures, and its whole output."""

    rps: float
    p50: float
    p99: float
    non_2xx: int
    socket_errors: str | None
    raw: str

    def check(self, where: str) -> None:
        """Stop, with wrk's report, if any response was not 2xx/3xx."""
        if self.non_2xx:
            print(self.raw)
            raise SystemExit(f"wrk saw {self.non_2xx} non-2xx/3xx responses on {where}")


def _ms(value: str) -> float:
    """One of wrk's latency figures ("850.00us", "12.50ms", "1.20s") in milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", value)
    if match is None:
        raise SystemExit(f"unexpected wrk latency figure {value!r}")
    return float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]


def _figure(pattern: str, out: str) -> str:
    """The first group of `pattern` in wrk's output; a clear exit when wrk printed something else."""
    match = re.search(pattern, out)
    if match is None:
        raise SystemExit(f"wrk's output has no {pattern!r}:\n{out}")
    return match.group(1)


def run_wrk(url: str, cookie: str | None, duration: int) -> WrkResult:
    """`wrk -t2 -c16 -d<duration>s --latency [-H Cookie: ...] URL`, parsed; `cookie` None sends no Cookie header."""
    header = ["-H", f"Cookie: {cookie}"] if cookie is not None else []
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{duration}s", "--latency", *header, url], capture_output=True, text=True, check=True).stdout
    failures = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return WrkResult(
        rps=float(_figure(r"Requests/sec:\s+([\d.]+)", out)),
        p50=_ms(_figure(r"\s50%\s+(\S+)", out)),
        p99=_ms(_figure(r"\s99%\s+(\S+)", out)),
        non_2xx=int(failures.group(1)) if failures else 0,
        socket_errors=errors.group(1) if errors else None,
        raw=out,
    )


def require_wrk() -> None:
    """Stop with the install hint when wrk is missing."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: run `bash scripts/system-packages` (as root)")


# --- the ticket data set (bench/queue_page.py, bench/dsr.py, bench/subject_data.py) --------------

CONTROLLERS = 10
SHARE_OF_FIRST = 0.6  # of the tickets, in the agent's controller
STATUSES = (("new", 0.1), ("open", 0.2), ("waiting", 0.2), ("closed", 0.5))
COLUMNS = (
    "id, reference, controller_id, key_owner, status, assignee_id, requester_name_ct, requester_email_ct,"
    " requester_email_bidx, subject_ct, reply_token, created_at, updated_at, closed_at, row_uid"
)
SUBJECTS = ("Cannot log in", "Invoice question", "Delete my account", "Wrong address on order", "Export of my data", "Newsletter unsubscribe")
FIRST = ("Anna", "Jonas", "Mia", "Lukas", "Sofia", "Noah", "Emma", "Elias", "Lea", "Paul")
LAST = ("Schmidt", "Novak", "Rossi", "Dubois", "Jansen", "Kowalski", "García", "Nielsen", "Horvat", "Silva")


def copy_bytes(value: bytes) -> str:
    """A bytea value in COPY's text format."""
    return "\\\\x" + value.hex()


def setup_desk(app: Any) -> tuple[list[int], Staff]:
    """CONTROLLERS controllers, an enrolled agent of the first one and 19 colleagues, through the services; returns (controller ids, the agent)."""
    from app.auth import service as auth
    from app.controllers.service import ControllerInput, create_controller
    from app.db import utcnow
    from app.extensions import db
    from app.principal import Principal

    by = Principal.system("bench")
    with app.app_context(), db.session_scope() as session:
        ids = [
            create_controller(session, ControllerInput(name=f"Bench Controller {n:02d} GmbH", dsr_contacts=[f"dpo@bench{n}.example"]), by=by, now=utcnow()).id
            for n in range(1, CONTROLLERS + 1)
        ]
    agent = enrol_staff(app, "bench.agent@desk.example", "agent", controller_ids=[ids[0]])
    with app.app_context(), db.session_scope() as session:
        # 19 colleagues to share the assignments (tickets.assignee_id references users). They never log in,
        # so bcrypt's minimum cost keeps the set-up quick.
        quick = auth.AuthPolicy(bcrypt_cost=4)
        app.config["BENCH_COLLEAGUES"] = [
            auth.create_user(
                session, f"colleague{n}@desk.example", role="agent", password=agent.password, controller_ids=[ids[0]], by=by, now=utcnow(), policy=quick
            ).id
            for n in range(1, 20)
        ]
    return ids, agent


# What the forked generator processes inherit: data keys, controllers, the agent, the time step.
_GEN: dict[str, Any] = {}
CHUNK = 20_000


def _rows(first: int) -> str:
    """COPY text of tickets first .. first+CHUNK-1: each personal value encrypted for its own row."""
    import random

    from app.crypto.cipher import blind_index, encrypt_field

    keys, controller_ids, agent_id, count, start, step = (_GEN[k] for k in ("keys", "controllers", "agent", "count", "start", "step"))
    rng = random.Random(first)
    statuses = [s for s, _ in STATUSES]
    weights = [w for _, w in STATUSES]
    assignees = [agent_id, *_GEN["colleagues"]]  # the agent and the colleagues from setup_desk
    out = []
    for n in range(first, min(first + CHUNK, count + 1)):
        cid = controller_ids[0] if rng.random() < SHARE_OF_FIRST else rng.choice(controller_ids[1:])
        key = keys[cid]
        uid = uuid.uuid4().hex
        status = rng.choices(statuses, weights)[0]
        assignee = rng.choice(assignees) if rng.random() < 0.7 else None
        stamp = (start + step * n).isoformat()
        email = f"{FIRST[n % 10].lower()}.{LAST[(n // 10) % 10].lower()}{n}@example.net"
        name = f"{FIRST[n % 10]} {LAST[(n // 10) % 10]}"
        name_ct, email_ct, subject_ct = (
            copy_bytes(encrypt_field(key.aead, key.id, value.encode(), table="tickets", column=column, row_uid=uid))
            for column, value in (("requester_name_ct", name), ("requester_email_ct", email), ("subject_ct", SUBJECTS[n % len(SUBJECTS)]))
        )
        out.append(
            f"{n}\tT-{stamp[:4]}-{n:06d}\t{cid}\t{cid}\t{status}\t{assignee or NULL}\t{name_ct}\t{email_ct}\t"
            f"{copy_bytes(blind_index(key.index_key, 'email', email))}\t{subject_ct}\t{secrets.token_hex(10)}\t{stamp}\t{stamp}\t"
            f"{stamp if status == 'closed' else NULL}\t{uid}\n"
        )
    return "".join(out)


def load_tickets(app: Any, database_url: str, controller_ids: list[int], agent_id: int, count: int) -> None:
    """`count` tickets by COPY, generated by two forked processes; the queue indexes are built after the load."""
    import multiprocessing

    import psycopg
    from sqlalchemy.schema import CreateIndex, DropIndex

    from app.crypto.keys import active_key, cache_for
    from app.db import table_of_model
    from app.extensions import db
    from app.tickets.models import Ticket

    with app.app_context(), db.session_scope() as session:
        keys = {cid: active_key(session.connection(), cache_for(session), f"controller:{cid}") for cid in controller_ids}
    start = dt.datetime(2024, 11, 1, tzinfo=dt.UTC)
    _GEN.update(
        keys=keys,
        colleagues=app.config.get("BENCH_COLLEAGUES", []),
        controllers=controller_ids,
        agent=agent_id,
        count=count,
        start=start,
        step=(dt.datetime(2026, 11, 1, tzinfo=dt.UTC) - start) / count,
    )
    with app.app_context():
        dialect = db.engine.dialect
    # Bulk load first, index after: the same index definitions as the migration, built once instead of row by row.
    indexes = sorted(table_of_model(Ticket).indexes, key=lambda i: str(i.name))
    url = libpq_url(database_url)
    with psycopg.connect(url) as conn:
        conn.execute("SET synchronous_commit = off")
        for index in indexes:
            conn.execute(str(DropIndex(index).compile(dialect=dialect)))
        began = time.monotonic()
        with multiprocessing.get_context("fork").Pool(2) as pool, conn.cursor() as cur, cur.copy(f"COPY tickets ({COLUMNS}) FROM STDIN") as copy:
            for text in pool.imap(_rows, range(1, count + 1, CHUNK)):
                copy.write(text)
        copied = time.monotonic()
        conn.execute("SET maintenance_work_mem = '256MB'")
        for index in indexes:
            conn.execute(str(CreateIndex(index).compile(dialect=dialect)))
        print(f"  generate + COPY {copied - began:.0f} s, {len(indexes)} indexes {time.monotonic() - copied:.0f} s")
        conn.execute("SELECT setval(pg_get_serial_sequence('tickets', 'id'), %s)", (count,))
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE tickets")


@contextmanager
def desk_with_tickets(count: int, **config: Any) -> Iterator[tuple[Desk, list[int], Staff]]:
    """A production desk (production_desk) with the bench's controllers and agent (setup_desk) and `count` generated tickets; prints the load time."""
    with production_desk(**config) as desk:
        controller_ids, agent = setup_desk(desk.app)
        started = time.monotonic()
        load_tickets(desk.app, desk.database_url, controller_ids, agent.id, count)
        print(f"loaded {count:,} tickets in {time.monotonic() - started:.0f} s")
        yield desk, controller_ids, agent
