"""The DSR sweeper pass and the DSR dashboard at 100,000 open requests and 1,000,000 tickets (Postgres).

    .venv/bin/python bench/dsr.py [--tickets 1000000] [--dsrs 100000] [--runs 20]

Creates a fresh Postgres database (dropped afterwards) and migrates it; makes
10 controllers, an agent and a privacy officer through the services; loads the
tickets with the generator in bench/common.py that bench/queue_page.py uses
(COPY, every personal value encrypted per row, blind index); then COPYs the
requests: subject name and email encrypted per row under the platform key with
the email's blind index, received over the last 12 weeks. Most are forwarded
and open (awaiting the controller's instruction); 100 wait for their forward
(the doorbell rung a minute ago), 2,900 sit in triage, those within 4 h of the
deadline already escalated and those past it already marked, as the sweeper
leaves them.

Measures (median and max of --runs, warm):
- one sweeper pass in that steady state (`app.dsr.sweeper.sweep`: finds the
  pending forwards and rings them on the in-process broker, looks for
  requests to escalate and to mark), committed;
- the same pass with work: 50 requests newly inside the 4-hour window
  (escalation emails to the privacy officer through the outbox, history and
  audit events), committed;
- the `dsr-chart` job (the 12-week aggregate in SQL, every 10 minutes);
- the dashboard's queries (`app.dsr.dashboard.dashboard`: three lists of 100,
  two counts, the suggestions, the kept chart);
- the whole dashboard page (GET /dsr/ as the privacy officer: login gate,
  queries, template with the SVG chart);
and prints the EXPLAIN (ANALYZE, BUFFERS) of every query of both.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import (  # noqa: E402 - after the sys.path line above (run as a script)
    NULL,
    capture,
    copy_bytes,
    desk_with_tickets,
    enrol_staff,
    explain_all,
    libpq_url,
    login_cookie,
    timed,
)

DSR_COLUMNS = (
    "id, reference, types, state, is_open, source, subject_name_ct, subject_email_ct, subject_email_bidx,"
    " received_at, due_at, forwarded_at, forward_seconds, escalated_at, missed_at, missed_reason_ct, missed_reason_missing,"
    " created_at, updated_at, row_uid"
)
FORWARD_COLUMNS = "id, dsr_id, controller_id, state, forwarded_at, message_id_bidx, outbox_ids, created_at"
PENDING_FORWARD = 100
TRIAGE = 2_900


def load_dsrs(app: Any, database_url: str, controller_ids: list[int], count: int, now: dt.datetime) -> None:
    """`count` open requests and their forward rows by COPY, in the states the sweeper leaves them."""
    import psycopg

    from app.crypto.cipher import blind_index, encrypt_field
    from app.crypto.keys import PLATFORM, active_key, cache_for
    from app.crypto.message_ids import digest_with
    from app.dsr.models import Dsr
    from app.extensions import db

    with app.app_context(), db.session_scope() as session:
        key = active_key(session.connection(), cache_for(session), PLATFORM)
    rng = random.Random(6)
    window = dt.timedelta(weeks=12)
    dsr_lines: list[str] = []
    forward_lines: list[str] = []
    forward_id = 0
    for n in range(1, count + 1):
        uid = uuid.uuid4().hex
        email = f"subject{n}@mail.example"
        name_ct = copy_bytes(encrypt_field(key.aead, key.id, f"Subject {n}".encode(), table="dsrs", column="subject_name_ct", row_uid=uid))
        email_ct = copy_bytes(encrypt_field(key.aead, key.id, email.encode(), table="dsrs", column="subject_email_ct", row_uid=uid))
        bidx = copy_bytes(blind_index(key.index_key, "email", email))
        if n <= PENDING_FORWARD + TRIAGE:
            # Unforwarded: received in the last 26 hours.
            received = now - dt.timedelta(minutes=rng.uniform(1, 26 * 60))
            state = "awaiting_forward" if n <= PENDING_FORWARD else "triage"
            forwarded_at, seconds = None, None
        else:
            received = now - window * rng.random()
            # Most forwards within minutes or hours; 2 % late (missed, most with a recorded reason).
            seconds = int(rng.uniform(86_400, 120_000) if rng.random() < 0.02 else rng.choice([rng.uniform(60, 3600), rng.uniform(3600, 86_000)]))
            forwarded_at = received + dt.timedelta(seconds=seconds)
            if forwarded_at > now:
                forwarded_at, seconds = now, int((now - received).total_seconds())
            state = "instructed" if n % 3 == 0 else "forwarded"
        due = received + dt.timedelta(hours=24)
        escalated = due - dt.timedelta(hours=4) if forwarded_at is None and due - dt.timedelta(hours=4) <= now else None
        missed = due if forwarded_at is None and due <= now else (due if seconds is not None and seconds > 86_400 else None)
        iso = received.isoformat()
        reason_ct, missing = NULL, "f"
        if missed is not None:
            if n % 10:
                reason = b"The controller's contact address bounced; forwarded after the registry was corrected."
                # Bound to the field's label (the column's name before migration 0012), as the model writes it.
                label = Dsr.missed_reason.bound_as or "missed_reason_ct"
                reason_ct = copy_bytes(encrypt_field(key.aead, key.id, reason, table="dsrs", column=label, row_uid=uid))
            else:
                missing = "t"
        dsr_lines.append(
            f"{n}\tDSR-{received.year}-{n:06d}\t{json.dumps(['access'])}\t{state}\tt\tprivacy_address\t{name_ct}\t{email_ct}\t{bidx}\t"
            f"{iso}\t{due.isoformat()}\t{forwarded_at.isoformat() if forwarded_at else NULL}\t{NULL if seconds is None else seconds}\t"
            f"{escalated.isoformat() if escalated else NULL}\t{missed.isoformat() if missed else NULL}\t{reason_ct}\t{missing}\t{iso}\t{iso}\t{uid}\n"
        )
        if state != "triage":
            forward_id += 1
            pending = state == "awaiting_forward"
            created = now - dt.timedelta(minutes=1) if pending else received
            sent_at = forwarded_at.isoformat() if forwarded_at and not pending else NULL
            forward_lines.append(
                f"{forward_id}\t{n}\t{controller_ids[n % len(controller_ids)]}\t{'pending' if pending else 'forwarded'}\t"
                f"{sent_at}\t{NULL if pending else copy_bytes(digest_with(key.index_key, f'fwd{n}@desk.example'))}\t[]\t{created.isoformat()}\n"
            )
    url = libpq_url(database_url)
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur:
            with cur.copy(f"COPY dsrs ({DSR_COLUMNS}) FROM STDIN") as copy:
                copy.write("".join(dsr_lines))
            with cur.copy(f"COPY dsr_forwards ({FORWARD_COLUMNS}) FROM STDIN") as copy:
                copy.write("".join(forward_lines))
        conn.execute("SELECT setval(pg_get_serial_sequence('dsrs', 'id'), %s)", (count,))
        conn.execute("SELECT setval(pg_get_serial_sequence('dsr_forwards', 'id'), %s)", (forward_id,))
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE dsrs")
        conn.execute("VACUUM ANALYZE dsr_forwards")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--dsrs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    from app.db import utcnow
    from app.dsr import dashboard as dsr_dashboard
    from app.dsr.settings import DsrSettings
    from app.dsr.sweeper import SweepResult, sweep
    from app.extensions import db
    from app.principal import Principal

    with desk_with_tickets(args.tickets, PRIVACY_ADDRESS="privacy@desk.example") as (desk, controller_ids, agent):
        app, database_url = desk.app, desk.database_url
        officer = enrol_staff(app, "bench.privacy@desk.example", "privacy_officer")
        now = utcnow()
        started = time.monotonic()
        load_dsrs(app, database_url, controller_ids, args.dsrs, now)
        print(f"loaded {args.dsrs:,} open DSRs ({PENDING_FORWARD} awaiting forward, {TRIAGE:,} in triage) in {time.monotonic() - started:.0f} s")

        dsr_settings = DsrSettings.from_config(app.config)
        by = Principal.system("bench")

        def sweep_pass() -> SweepResult:
            with app.app_context(), db.session_scope() as session:
                return sweep(session, settings=dsr_settings, by=by, now=utcnow())

        first = sweep_pass()
        print(f"first pass (settles the load): rung {first.rung}, forwarded {first.forwarded}, escalated {first.escalated}, missed {first.missed}")
        steady_med, steady_max = timed(sweep_pass, args.runs)
        sweep_sql = capture(app, sweep_pass)

        def dashboard_queries() -> None:
            with app.app_context(), db.session_scope() as session:
                board = dsr_dashboard.dashboard(session, now=utcnow())
                assert len(board.weeks) == 12

        def chart_job() -> None:
            with app.app_context(), db.session_scope() as session:
                dsr_dashboard.refresh_chart(session, now=utcnow())

        chart_med, chart_max = timed(chart_job, max(3, args.runs // 4))
        chart_sql = capture(app, chart_job)
        dash_med, dash_max = timed(dashboard_queries, args.runs)
        dash_sql = capture(app, dashboard_queries)

        cookie = login_cookie(app, officer)
        client = app.test_client(use_cookies=False)

        def page() -> None:
            response = client.get("/dsr/", headers={"Cookie": cookie})
            assert response.status_code == 200, response.status_code

        page_med, page_max = timed(page, args.runs)

        # A pass with work: 50 triage requests newly inside the 4-hour window.
        import psycopg

        url = libpq_url(database_url)
        work: list[float] = []
        for _ in range(3):
            with psycopg.connect(url) as conn:
                conn.execute(
                    "UPDATE dsrs SET escalated_at = NULL, due_at = now() + interval '3 hours' WHERE id IN "
                    "(SELECT id FROM dsrs WHERE state = 'triage' AND escalated_at IS NOT NULL AND missed_at IS NULL ORDER BY id LIMIT 50)"
                )
                conn.commit()
            began = time.perf_counter()
            result = sweep_pass()
            work.append((time.perf_counter() - began) * 1000)
            assert result.escalated >= 50, result

        print()
        print(f"sweeper pass, steady state ({args.dsrs:,} open DSRs, {args.tickets:,} tickets): median {steady_med:.1f} ms, max {steady_max:.1f} ms")
        print(f"sweeper pass escalating 50 requests (50 emails to the privacy officer via the outbox): median {statistics.median(work):.1f} ms")
        print(f"dsr-chart job (12-week aggregate over the window, kept for the dashboard): median {chart_med:.1f} ms, max {chart_max:.1f} ms")
        print(f"dashboard queries: median {dash_med:.1f} ms, max {dash_max:.1f} ms")
        print(f"dashboard page GET /dsr/ (gate + queries + template + SVG): median {page_med:.1f} ms, max {page_max:.1f} ms")
        print("\nEXPLAIN, sweeper pass (steady state):")
        print(explain_all(database_url, sweep_sql))
        print("\nEXPLAIN, dashboard queries:")
        print(explain_all(database_url, dash_sql))
        print("\nEXPLAIN, dsr-chart job:")
        print(explain_all(database_url, chart_sql))
        with open("/proc/loadavg") as f:
            print(f"\nload average at the end: {f.read().split()[:3]}")


if __name__ == "__main__":
    main()
