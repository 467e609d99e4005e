"""What `/healthz` and `flask status` report: whether the desk can keep its 24-hour promise right now. No personal data.

Besides reachability of the database and the broker (issue 15 item 2):

- the workers' heartbeat age (the `heartbeat` job writes it every 15 s through
  a worker): stale past HEALTH_WORKER_STALE_SECONDS (default 60 s), or never
  written while outbox work has waited that long, means nobody does the work;
- the scheduler leader's last beat (written while it leads): stale the same way;
- the outbox: counts per state, the age of the oldest row still waiting to leave;
- the relay: last success, last failure, consecutive failures and the breaker;
- the open request due first that no relay has accepted yet, and its time left.

`status` is "ok" only when none of `problems` holds; the web answers 503
otherwise (a load balancer or a monitor acts on it). The problems are: the
database or broker unreachable, workers or scheduler stale, the relay failing
(breaker open), a request within 4 hours of its deadline not yet delivered.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.db import Database, utcnow
from app.dsr import deadlines
from app.dsr.delivery import oldest_undelivered
from app.jobs.broker import broker_status
from app.jobs.models import JobState
from app.jobs.service import LEADER_BEAT, WORKER_HEARTBEAT
from app.mail import relay
from app.mail.figures import backlog, oldest_waiting


def database_status(database: Database) -> str:
    """ "ok" when a trivial query answers, else "unreachable"."""
    try:
        with database.sessionmaker() as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return "unreachable"
    return "ok"


def _seconds(since: dt.datetime | None, now: dt.datetime) -> int | None:
    if since is None:
        return None
    since = since if since.tzinfo else since.replace(tzinfo=dt.UTC)
    return max(int((now - since).total_seconds()), 0)


def _iso(at: dt.datetime | None) -> str | None:
    return at.astimezone(dt.UTC).isoformat(timespec="seconds") if at is not None else None


def _beat(session: Session, name: str, *, now: dt.datetime, stale: int, waiting: int | None) -> dict[str, Any]:
    """The age of a beat row and its verdict: ok, stale, or never (a problem once work has waited `stale` seconds)."""
    row = session.get(JobState, name)
    age = _seconds(row.updated_at, now) if row is not None else None
    if age is None:
        state = "stale" if waiting is not None and waiting > stale else "never"
    else:
        state = "stale" if age > stale else "ok"
    return {"age_seconds": age, "state": state}


def desk_report(session: Session, config: Mapping[str, Any], *, now: dt.datetime) -> dict[str, Any]:
    """The workers, scheduler, outbox, relay and DSR figures (reads only; a handful of indexed queries)."""
    stale = int(float(config.get("HEALTH_WORKER_STALE_SECONDS", 60)))
    waiting = _seconds(oldest_waiting(session), now)
    seen = relay.health(session)
    due = oldest_undelivered(session)
    return {
        "outbox": backlog(session, now=now),
        "outbox_oldest_waiting_seconds": waiting,
        "workers": _beat(session, WORKER_HEARTBEAT, now=now, stale=stale, waiting=waiting),
        "scheduler": _beat(session, LEADER_BEAT, now=now, stale=stale, waiting=waiting),
        "relay": {
            "last_success": _iso(seen.last_success),
            "last_failure": _iso(seen.last_failure),
            "last_error": seen.last_error,
            "consecutive_failures": seen.failures,
            "breaker": "open" if seen.open else "closed",
        },
        "dsr": {
            "oldest_undelivered_due_at": _iso(due[0]) if due else None,
            "seconds_left": int((due[0] - now).total_seconds()) if due else None,
            "state": due[1] if due else None,
        },
    }


def problems_of(report: Mapping[str, Any]) -> list[str]:
    """Why the desk cannot keep its 24-hour promise at the current rate (empty: it can)."""
    found = []
    if report["database"] != "ok":
        found.append("database unreachable")
    if report["broker"] not in ("ok", "in-process"):
        found.append("broker unreachable")
    if report.get("workers", {}).get("state") == "stale":
        found.append("workers stale")
    if report.get("scheduler", {}).get("state") == "stale":
        found.append("scheduler stale")
    if report.get("relay", {}).get("breaker") == "open":
        found.append("relay failing")
    left = report.get("dsr", {}).get("seconds_left")
    if left is not None and left <= deadlines.ESCALATE_BEFORE.total_seconds():
        found.append("a request within 4 hours of its deadline is not delivered")
    return found


def health_report(database: Database, config: Mapping[str, Any], *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Status of each dependency and of the work; overall "ok" only when `problems` is empty."""
    now = now or utcnow()
    db_state = database_status(database)
    report: dict[str, Any] = {
        "status": "ok",
        "problems": [],
        "database": db_state,
        "database_backend": "postgresql" if str(config["DATABASE_URL"]).startswith("postgresql") else "sqlite",
        "broker": broker_status(),
        "mail": "smtp" if config.get("SMTP_URL") else "file-outbox",
        "outbox": None,
    }
    if db_state == "ok":
        try:
            with database.sessionmaker() as session:
                report.update(desk_report(session, config, now=now))
        except SQLAlchemyError:
            report["database"] = "unreachable"
    report["problems"] = problems_of(report)
    report["status"] = "ok" if not report["problems"] else "degraded"
    return report
