"""The fault campaign of issue 15 at a small size: emails through kills and outages, counted lost and duplicated.

    .venv/bin/python bench/outage.py [--emails 40] [--kills 8]

Postgres (a fresh database from BENCH_DATABASE_URL / the local server), the
desk in production mode, a real SMTP relay on loopback (aiosmtpd) that answers
DATA after 100 ms. Scenarios, each on its own set of emails:

1. kill -9: `flask --app wsgi mail sweep-outbox --send-now` is killed with
   SIGKILL at a random moment of its sending, --kills times (the stale-claim
   window set to 2 s so the bench does not wait 270 s), then run to the end;
2. relay outage: the relay is stopped while a sending process tries every
   email (the breaker opens after 3 failures), then started again; the next
   pass after the breaker's probe time sends the rest;
3. broker outage: the broker refuses every message while data-subject requests
   arrive through `mail ingest`; the leading scheduler runs the sweeps itself
   (one tick a second) and the forwards must reach the relay.

For each: emails queued, received by the relay, lost (never received) and
duplicated (received more than once), and the time after the fault ended
until the last email arrived.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import production_desk  # noqa: E402 - after the sys.path line above (run as a script)


def _queue(app: Any, n: int, tag: str) -> None:
    from app.db import utcnow
    from app.extensions import db
    from app.mail import outbox
    from app.principal import Principal

    with app.app_context(), db.session_scope() as session:
        for i in range(n):
            outbox.enqueue_email(
                session, to=f"{tag}{i}@example.org", subject="Notice", body_text=f"Hello {i}", kind="notice", by=Principal.system("bench"), now=utcnow()
            )


def _counts(received: list[Any], prefix: str, n: int) -> tuple[int, int]:
    copies = collections.Counter(str(r.message["Message-ID"]) for r in received if r.rcpt_tos[0].startswith(prefix))
    return n - len(copies), sum(1 for c in copies.values() if c > 1)


def _states(app: Any, prefix: str) -> dict[str, int]:
    """The outbox rows of a scenario by state (what 'lost' means if it is not zero)."""
    from sqlalchemy import select

    from app.extensions import db
    from app.mail.models import OutboxEmail

    with app.app_context(), db.session_scope() as session:
        rows = list(session.scalars(select(OutboxEmail)))
        return dict(collections.Counter(f"{r.state}:{r.delivery_note or r.last_error}" for r in rows if (r.to_addr or "").startswith(prefix)))


def _finish(app: Any, env: dict[str, str], prefix: str, *, timeout: float = 90.0) -> None:
    """Run sending passes (as cron or the scheduler's inline sweep would) until no row of the scenario waits, or `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _send_now(env).wait()
        waiting = {k: v for k, v in _states(app, prefix).items() if not k.startswith(("sent", "failed", "refused"))}
        if not waiting:
            return
        time.sleep(1.0)


def _send_now(env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "mail", "sweep-outbox", "--send-now"]
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_scenario(app: Any, env: dict[str, str], smtp: Any, emails: int, kills: int) -> dict[str, Any]:
    _queue(app, emails, "kill")
    rng = random.Random(15)
    done = 0
    for _ in range(kills):
        before = len(smtp.received)
        proc = _send_now(env)
        deadline = time.monotonic() + 60
        while len(smtp.received) == before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            done += 1
        proc.wait()
        time.sleep(2.1)  # the dead process's claim goes stale
    ended = time.monotonic()
    _finish(app, env, "kill")
    lost, duplicated = _counts(smtp.received, "kill", emails)
    print("kill rows:", _states(app, "kill"), file=sys.stderr)
    return {"scenario": f"kill -9 x{done}", "emails": emails, "lost": lost, "duplicated": duplicated, "recovery_s": time.monotonic() - ended}


def relay_scenario(app: Any, env: dict[str, str], smtp: Any, emails: int) -> dict[str, Any]:
    from app.mail import relay

    _queue(app, emails, "relay")
    smtp.stop()
    _send_now(env).wait()  # every attempt fails; the breaker opens
    smtp.start()
    ended = time.monotonic()
    time.sleep(relay.PROBE_EVERY.total_seconds() + 0.5)  # the breaker's next probe
    _finish(app, env, "relay")
    lost, duplicated = _counts(smtp.received, "relay", emails)
    print("relay rows:", _states(app, "relay"), file=sys.stderr)
    return {"scenario": "relay outage", "emails": emails, "lost": lost, "duplicated": duplicated, "recovery_s": time.monotonic() - ended}


def broker_scenario(app: Any, smtp: Any, requests: int) -> dict[str, Any]:
    import dramatiq

    from app.controllers.service import ControllerInput, create_controller
    from app.db import utcnow
    from app.extensions import db
    from app.jobs.doorbell import BROKER_OUTAGE
    from app.jobs.scheduler import Scheduler
    from app.mail.inbound import IngestSettings, ingest_committed
    from app.principal import Principal
    from workers.scheduler import JOBS

    with app.app_context(), db.session_scope() as session:
        contact = ControllerInput(name="Acme Corp", dsr_contacts=["dpo@acme-corp.example"], domains=["acme-corp.example"], identifiers=["ACME-4711"])
        create_controller(session, contact, by=Principal.system("bench"), now=utcnow())
    broker = dramatiq.get_broker()
    saved = broker.enqueue

    def down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("broker unreachable")

    class Leader:
        def acquire(self) -> bool:
            return True

        def release(self) -> None:
            pass

    broker.enqueue = down  # type: ignore[method-assign]
    try:
        with app.app_context():
            for i in range(requests):
                raw = (
                    f"From: Subject {i} <subject{i}@mailbox.example>\r\nTo: {app.config['PRIVACY_ADDRESS']}\r\nSubject: My data\r\n"
                    f"Message-ID: <bench-{i}@mailbox.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                    "I am a customer of Acme (customer number ACME-4711). Please delete my personal data.\r\n"
                ).encode()
                ingest_committed(
                    db.session_scope, raw, settings=IngestSettings.from_config(app.config), by=Principal.system("bench"), clock=utcnow, source="pipe"
                )
        scheduler = Scheduler(Leader(), JOBS, app=app, broker_ok=lambda: False)
        start = utcnow()
        began = time.monotonic()
        for second in range(0, 180):
            scheduler.tick(start + dt.timedelta(seconds=second))
            if len([r for r in smtp.received if r.rcpt_tos == ["dpo@acme-corp.example"]]) >= requests:
                break
    finally:
        broker.enqueue = saved  # type: ignore[method-assign]
        BROKER_OUTAGE.clear()
    copies = collections.Counter(str(r.message["Message-ID"]) for r in smtp.received if r.rcpt_tos == ["dpo@acme-corp.example"])
    return {
        "scenario": "broker outage (scheduler sweeps inline)",
        "emails": requests,
        "lost": requests - len(copies),
        "duplicated": sum(1 for c in copies.values() if c > 1),
        "recovery_s": time.monotonic() - began,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emails", type=int, default=40)
    parser.add_argument("--kills", type=int, default=8)
    args = parser.parse_args()

    from tests.workers.smtp_support import running_smtp

    with running_smtp() as smtp, production_desk(SMTP_URL="smtp://127.0.0.1:0") as desk:
        smtp.handler.data_delay = 0.1
        url = f"smtp://127.0.0.1:{smtp.port}?timeout=10"
        desk.app.config.update(SMTP_URL=url, OUTBOX_STALE_SECONDS=2)
        env = dict(desk.env, SMTP_URL=url, OUTBOX_STALE_SECONDS="2")
        from app import migrations  # noqa: F401 - the desk is migrated by production_desk

        results = [kill_scenario(desk.app, env, smtp, args.emails, args.kills), relay_scenario(desk.app, env, smtp, args.emails)]
        results.append(broker_scenario(desk.app, smtp, max(args.emails // 4, 5)))
    print(f"{'scenario':42} {'emails':>6} {'lost':>5} {'dup':>5} {'recovery s':>10}")
    for r in results:
        print(f"{r['scenario']:42} {r['emails']:>6} {r['lost']:>5} {r['duplicated']:>5} {r['recovery_s']:>10.1f}")


if __name__ == "__main__":
    main()
