"""The privacy officers' dashboard and its 12-week chart (kept by the `dsr-chart` job, computed here when stale)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import and_, func, select, text
from sqlalchemy.orm import Session, load_only, selectinload

from app.dsr import deadlines
from app.dsr.models import UNFORWARDED, Dsr, DsrForward, DsrSuggestion
from app.jobs.service import get_state, save_state


@dataclass
class Dashboard:
    """The privacy officers' view: unforwarded requests by time left, the rest of the open ones, triage, the chart."""

    unforwarded: list[Dsr]
    forwarded_open: list[Dsr]
    triage: list[Dsr]
    escalated: int
    missed_without_reason: int
    suggestions: list[DsrSuggestion]
    weeks: list[deadlines.Week]


# What a dashboard row shows: no ciphertext is read for a list of references.
_ROW = (
    load_only(
        Dsr.id, Dsr.reference, Dsr.types, Dsr.state, Dsr.is_open, Dsr.received_at, Dsr.due_at, Dsr.forwarded_at,
        Dsr.escalated_at, Dsr.missed_at, Dsr.missed_reason_missing,
    ),
    selectinload(Dsr.forwards).load_only(DsrForward.dsr_id, DsrForward.controller_id),
)  # fmt: skip


def dashboard(session: Session, *, now: dt.datetime, limit: int = 50) -> Dashboard:
    """Everything the dashboard shows, in a handful of indexed queries."""
    unforwarded: list[Dsr] = []
    for state in ("awaiting_forward", "triage"):
        unforwarded += session.scalars(select(Dsr).options(*_ROW).where(Dsr.state == state).order_by(Dsr.due_at, Dsr.id).limit(limit)).all()
    unforwarded.sort(key=lambda d: (d.due_at, d.id))
    triage = [d for d in unforwarded if d.state == "triage"]
    forwarded_open = list(
        session.scalars(
            select(Dsr)
            .options(*_ROW)
            .where(Dsr.is_open.is_(True), Dsr.state.in_(("forwarded", "instructed")))
            .order_by(Dsr.due_at.desc(), Dsr.id.desc())
            .limit(limit)
        )
    )
    escalated = session.scalar(select(func.count()).select_from(Dsr).where(Dsr.state.in_(UNFORWARDED), Dsr.due_at <= now + deadlines.ESCALATE_BEFORE))
    without_reason = session.scalar(select(func.count()).select_from(Dsr).where(Dsr.missed_reason_missing.is_(True)))
    suggestions = list(session.scalars(select(DsrSuggestion).where(DsrSuggestion.state == "open").order_by(DsrSuggestion.id.desc()).limit(limit)))
    return Dashboard(unforwarded[:limit], forwarded_open, triage, int(escalated or 0), int(without_reason or 0), suggestions, cached_chart(session, now=now))


CHART_STATE = "dsr.chart"
# The chart has weekly resolution: the job refreshes it every 10 minutes; older than this, the page computes it itself.
CHART_MAX_AGE = dt.timedelta(minutes=15)


def refresh_chart(session: Session, *, now: dt.datetime) -> list[deadlines.Week]:
    """Compute the 12-week chart and keep it for the dashboard (the `dsr-chart` job, every 10 minutes)."""
    weeks = chart(session, now=now)
    state = {
        "computed_at": now.isoformat(),
        "weeks": [[w.start.isoformat(), w.received, w.forwarded_in_time, w.median_seconds] for w in weeks],
    }
    save_state(session, CHART_STATE, state, now=now)
    return weeks


def cached_chart(session: Session, *, now: dt.datetime) -> list[deadlines.Week]:
    """The kept chart when it is fresh and of the current 12 weeks, else computed now (one aggregate over the window)."""
    state = get_state(session, CHART_STATE)
    if state:
        computed = dt.datetime.fromisoformat(state["computed_at"])
        weeks = [deadlines.Week(dt.datetime.fromisoformat(start), received, in_time, median) for start, received, in_time, median in state["weeks"]]
        if dt.timedelta(0) <= now - computed <= CHART_MAX_AGE and [w.start for w in weeks] == deadlines.week_starts(now):
            return weeks
    return chart(session, now=now)


def chart(session: Session, *, now: dt.datetime, weeks: int = 12) -> list[deadlines.Week]:
    """Per week of the last 12: requests received, forwarded within 24 h, median time to forward."""
    starts = deadlines.week_starts(now, weeks)
    window_end = starts[-1] + dt.timedelta(weeks=1)
    within = int(deadlines.FORWARD_WITHIN.total_seconds())
    if session.get_bind().dialect.name == "postgresql":
        return _chart_postgres(session, starts, window_end, within)
    received = [0] * weeks
    in_time = [0] * weeks
    times: list[list[int]] = [[] for _ in range(weeks)]
    rows = session.execute(select(Dsr.received_at, Dsr.forward_seconds).where(and_(Dsr.received_at >= starts[0], Dsr.received_at < window_end)))
    for received_at, seconds in rows:
        at = received_at if received_at.tzinfo else received_at.replace(tzinfo=dt.UTC)
        i = min(int((at - starts[0]) / dt.timedelta(weeks=1)), weeks - 1)
        received[i] += 1
        if seconds is not None:
            times[i].append(int(seconds))
            in_time[i] += seconds <= within
    return [deadlines.Week(starts[i], received[i], in_time[i], deadlines.median(times[i])) for i in range(weeks)]


def _chart_postgres(session: Session, starts: list[dt.datetime], window_end: dt.datetime, within: int) -> list[deadlines.Week]:
    # Aggregated in the database: one index-only scan over the window, 12 rows back.
    rows = session.execute(
        text(
            "SELECT date_bin('7 days', received_at, :start) AS week, count(*) AS received,"
            " count(*) FILTER (WHERE forward_seconds <= :within) AS in_time,"
            " percentile_disc(0.5) WITHIN GROUP (ORDER BY forward_seconds) AS median"
            " FROM dsrs WHERE received_at >= :start AND received_at < :end GROUP BY 1"
        ),
        {"start": starts[0], "end": window_end, "within": within},
    ).all()
    by_week = {int((r.week - starts[0]) / dt.timedelta(weeks=1)): r for r in rows}
    out = []
    for i, start in enumerate(starts):
        r = by_week.get(i)
        out.append(deadlines.Week(start, int(r.received) if r else 0, int(r.in_time) if r else 0, int(r.median) if r and r.median is not None else None))
    return out
