"""The pure parts: the 24-hour clock and the multilingual classifier."""

from __future__ import annotations

import datetime as dt

import pytest

from app.dsr import classifier, deadlines
from app.dsr.chart import geometry

FRIDAY_2350 = dt.datetime(2026, 11, 20, 23, 50, tzinfo=dt.UTC)


def test_a_friday_night_request_is_due_saturday_night_with_no_weekend_extension() -> None:
    due = deadlines.due_at(FRIDAY_2350)
    assert due == dt.datetime(2026, 11, 21, 23, 50, tzinfo=dt.UTC)
    assert deadlines.escalate_at(due) == dt.datetime(2026, 11, 21, 19, 50, tzinfo=dt.UTC)
    with pytest.raises(ValueError):
        deadlines.due_at(dt.datetime(2026, 11, 20, 23, 50))


@pytest.mark.parametrize(
    ("hours_left", "forwarded", "expected"),
    [
        (20, False, "ok"),
        (11, False, "warn"),
        (4, False, "escalated"),
        (0.5, False, "escalated"),
        (0, False, "missed"),
        (-3, False, "missed"),
        (-3, True, "done"),
    ],
)
def test_urgency_colours(hours_left: float, forwarded: bool, expected: str) -> None:
    now = FRIDAY_2350
    assert deadlines.urgency(now + dt.timedelta(hours=hours_left), now, forwarded=forwarded) == expected


def test_escalation_and_missed_deadline_happen_once_and_never_after_the_forward() -> None:
    due = deadlines.due_at(FRIDAY_2350)
    at = deadlines.escalate_at(due)
    assert not deadlines.should_escalate(due, at - dt.timedelta(seconds=1), forwarded=False, escalated=False)
    assert deadlines.should_escalate(due, at, forwarded=False, escalated=False)
    assert not deadlines.should_escalate(due, at, forwarded=False, escalated=True)
    assert not deadlines.should_escalate(due, at, forwarded=True, escalated=False)
    assert deadlines.is_missed(due, due, forwarded=False) and not deadlines.is_missed(due, due, forwarded=True)
    assert deadlines.format_left(dt.timedelta(hours=5, minutes=3)) == "5 h 03 min"
    assert deadlines.format_left(-dt.timedelta(hours=1, minutes=10)) == "overdue 1 h 10 min"


def test_twelve_weeks_start_on_mondays_and_end_with_this_week() -> None:
    starts = deadlines.week_starts(FRIDAY_2350)
    assert len(starts) == 12 and all(s.weekday() == 0 and s.hour == 0 for s in starts)
    assert starts[-1] <= FRIDAY_2350 < starts[-1] + dt.timedelta(weeks=1)
    assert deadlines.median([]) is None and deadlines.median([5, 1, 3]) == 3 and deadlines.median([4, 1, 3, 2]) == 2


@pytest.mark.parametrize(
    ("text", "types", "language"),
    [
        ("Please delete my personal data and close my account under the GDPR.", {"erasure"}, "en"),
        ("I would like a copy of my personal data (subject access request).", {"access"}, "en"),
        ("Bitte um Löschung meiner personenbezogenen Daten gemäß DSGVO.", {"erasure"}, "de"),
        ("Ich bitte um Auskunft, welche Daten Sie über mich speichern (Art. 15 DSGVO).", {"access"}, "de"),
        ("Kérem a személyes adataim törlését a GDPR alapján.", {"erasure"}, "hu"),
        ("Tájékoztatást kérek, milyen személyes adatot kezelnek rólam.", {"access"}, "hu"),
        ("Je demande l'effacement de mes données personnelles (RGPD).", {"erasure"}, "fr"),
        ("Je souhaite exercer mon droit d'accès à mes données personnelles.", {"access"}, "fr"),
        ("My address is wrong, please correct my data; this is a rectification request.", {"rectification"}, "en"),
        ("I object to the processing of my personal data for marketing.", {"objection"}, "en"),
    ],
)
def test_the_classifier_suggests_requests_in_several_languages(text: str, types: set[str], language: str) -> None:
    hint = classifier.classify(text)
    assert hint.looks_like_dsr
    assert types <= set(hint.types)
    assert language in hint.languages


@pytest.mark.parametrize(
    "text",
    [
        "My invoice total is wrong, can you check order 4711?",
        "Die Lieferung ist nicht angekommen.",
        "A számlám összege hibás.",
        "Le colis est arrivé endommagé.",
        "The average delivery time is too long.",
    ],
)
def test_ordinary_tickets_are_not_flagged(text: str) -> None:
    assert not classifier.classify(text).looks_like_dsr


def test_the_chart_geometry_scales_bars_and_the_median_line() -> None:
    start = deadlines.week_starts(FRIDAY_2350)
    weeks = [deadlines.Week(s, i, i // 2, 3600 * i if i else None) for i, s in enumerate(start)]
    chart = geometry(weeks)
    assert chart.max_count == 11 and len(chart.bars) == 12
    tallest = chart.bars[-1]
    assert tallest.received_y == chart.plot_top and tallest.in_time_h < tallest.received_h
    assert len(chart.median_points.split()) == 11  # the week without a forward has no point
    assert chart.bars[0].median_hours == "-" and chart.bars[2].median_hours == "2.0 h"
