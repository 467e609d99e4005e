"""The desk's periodic jobs, and `python -m workers.scheduler`: the production scheduler process.

The scheduler itself (leader lock, due jobs, the loop) is app.jobs.scheduler;
this module registers which actors run how often, and starts the process.
The process builds its app with the factory named in APP_FACTORY (a dotted
string resolved at start), so nothing here imports the app factory.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import sys
import threading

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.jobs.broker import resolve_factory
from app.jobs.scheduler import Job, periodic, scheduler_for
from app.retention.models import RetentionRun
from workers import APP_FACTORY

log = logging.getLogger(__name__)

__all__ = ["JOBS", "main"]


def _last_full_retention_run(session: Session) -> dt.datetime | None:
    """When the newest whole retention run (every controller and category) in the ledger started."""
    query = select(func.max(RetentionRun.started_at)).where(RetentionRun.only_controller_id.is_(None), RetentionRun.only_category.is_(None))
    return session.scalar(query)


# Every periodic job of the desk; each domain adds its sweeper here. `inline`: run in the scheduler itself while
# the broker is unreachable: every job whose promise is time-bound (the sweepers, the checkpoint, the daily
# retention run); never the heartbeat, which proves that a worker took a message. Not the dashboard chart either:
# it promises nothing and waits for the broker.
JOBS: list[Job] = [
    Job("heartbeat", "heartbeat", 15),
    Job("outbox-sweep", "sweep_outbox", 30, inline=True),
    # At most a minute of events is ever unsigned (issue 12 item 13), broker or not; an unchanged head writes nothing.
    Job("audit checkpoint", "audit_checkpoint", 60, inline=True),
    Job("imap-poll", "poll_imap", 60, inline=True),
    Job("dsr-sweep", "sweep_dsrs", 60, inline=True),
    Job("dsr-chart", "refresh_dsr_chart", 600),
    Job("subject-data-sweep", "sweep_subject_data", 60, inline=True),
    Job("deletion-sweep", "sweep_deletion_runs", 60, inline=True),
    # Once a day at the time of day the app setting names (a cron expression, UTC): issue 14. Its last run is the
    # later of the scheduler's record and the ledger's newest whole run, so a restart across the time runs it once.
    # While the broker is down it runs in a thread of the scheduler (it may take minutes; the beat goes on).
    Job("retention-run", "run_retention", 0, inline=True, at="RETENTION_RUN_AT", apart=True, ran_at=_last_full_retention_run),
]
periodic(*JOBS)


def main(factory: str = APP_FACTORY) -> None:
    """`python -m workers.scheduler`: build the app with `factory` ("module:attribute") and lead or wait until SIGTERM/SIGINT."""
    from config.settings import ConfigError

    try:
        app = resolve_factory(factory)()
    except ConfigError as exc:
        # One line naming the variable, never a traceback (operator contract).
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("scheduler started, pid %s", os.getpid())
    with app.app_context():
        scheduler_for(app).run(stop)


if __name__ == "__main__":
    main()
