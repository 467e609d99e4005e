"""Outbox throughput: emails queued per second, then delivered per second to an SMTP server on loopback.

    .venv/bin/python bench/outbox.py [--emails 2000] [--threads 4] [--sqlite] [--file-outbox]

Creates a fresh database (Postgres from BENCH_DATABASE_URL / the local server,
or a SQLite file with --sqlite), migrates it and makes one controller. Then:
1. queues --emails notices to the controller's DSR contact, one committed
   transaction each, as a service would (instruction gate, encryption of the
   recipient and bodies, doorbell on the in-process broker), and reports the
   commit latency p50/p99 and the rate;
2. starts an in-process dramatiq worker with --threads threads and times
   until every row is `sent` through aiosmtpd on 127.0.0.1 (or the file
   outbox with --file-outbox): deliveries per second. It checks that the
   server got each Message-ID once.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import desk_environment, free_port, fresh_postgres  # noqa: E402 - after the sys.path line above (run as a script)


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@contextlib.contextmanager
def database(sqlite: bool) -> Iterator[str]:
    if sqlite:
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/bench.sqlite3"
    else:
        with fresh_postgres() as url:
            yield url


class Sink:
    """An aiosmtpd handler that counts Message-IDs."""

    def __init__(self) -> None:
        self.ids: Counter[str] = Counter()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for line in bytes(envelope.original_content).split(b"\r\n"):
            if line.lower().startswith(b"message-id:"):
                self.ids[line.split(b":", 1)[1].strip().decode()] += 1
                break
        return "250 2.0.0 Ok"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--file-outbox", action="store_true")
    args = parser.parse_args()

    import os

    from aiosmtpd.controller import Controller
    from sqlalchemy import func, select

    port = free_port()
    sink = Sink()
    smtp = Controller(sink, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        with database(args.sqlite) as url, tempfile.TemporaryDirectory() as instance:
            env = desk_environment(url, Path(instance))
            env.pop("DRAMATIQ_BROKER_URL", None)
            if not args.file_outbox:
                env["SMTP_URL"] = f"smtp://127.0.0.1:{port}"
            os.environ.clear()
            os.environ.update(env)

            from app import create_app
            from app import migrations as desk_migrations
            from app.controllers.service import ControllerInput, create_controller
            from app.db import utcnow
            from app.extensions import db
            from app.jobs.broker import start_worker
            from app.mail.models import OutboxEmail
            from app.mail.outbox import enqueue_email, msgid_domain_for
            from app.principal import Principal

            desk_migrations.upgrade(url)
            app = create_app()
            by = Principal.system("bench")
            with app.app_context():
                with db.session_scope() as session:
                    data = ControllerInput(name="Bench Outbox GmbH", dsr_contacts=["dpo@bench-outbox.example"])
                    controller = create_controller(session, data, by=by, now=utcnow())
                commit_ms: list[float] = []
                started = time.perf_counter()
                for n in range(args.emails):
                    t0 = time.perf_counter()
                    with db.session_scope() as session:
                        enqueue_email(
                            session,
                            to="dpo@bench-outbox.example",
                            subject=f"Data subject request forwarded [D-2026-{n:06d}]",
                            body_text="A data subject asked for access to their data.\n" * 20,
                            controller_id=controller.id,
                            related_type="bench",
                            related_id=n,
                            kind="notice",
                            msgid_domain=msgid_domain_for(app.config),
                            by=by,
                            now=utcnow(),
                        )
                    commit_ms.append((time.perf_counter() - t0) * 1000)
                queued_s = time.perf_counter() - started
                worker = start_worker(threads=args.threads)
                t_start = time.perf_counter()
                try:
                    while True:
                        with db.session_scope() as session:
                            left = session.scalar(select(func.count()).select_from(OutboxEmail).where(OutboxEmail.state != "sent"))
                        if not left:
                            break
                        time.sleep(0.05)
                    delivered_s = time.perf_counter() - t_start
                finally:
                    worker.stop()
                with db.session_scope() as session:
                    rows = session.execute(select(OutboxEmail.created_at, OutboxEmail.sent_at, OutboxEmail.attempts)).all()
            backend = "SQLite" if args.sqlite else "Postgres"
            transport = "file outbox" if args.file_outbox else "SMTP (aiosmtpd, loopback)"
            print(f"{backend}, {transport}, {args.emails} emails, {args.threads} worker threads")
            rate = args.emails / queued_s
            print(f"queue: {rate:.0f} emails/s, one per transaction; commit p50 {pct(commit_ms, 0.5):.1f} ms, p99 {pct(commit_ms, 0.99):.1f} ms")
            print(f"deliver: {args.emails / delivered_s:.0f} emails/s ({delivered_s:.1f} s for all)")
            if not args.file_outbox:
                dupes = sum(1 for c in sink.ids.values() if c > 1)
                print(f"server received {sum(sink.ids.values())} messages, {len(sink.ids)} distinct Message-IDs, {dupes} duplicated")
            print(f"attempts per email: max {max(r.attempts for r in rows)}")
    finally:
        smtp.stop()


if __name__ == "__main__":
    main()
