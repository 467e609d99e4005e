"""The 12-week chart as SVG geometry, drawn by a template on the server (no scripts, nothing external)."""

from __future__ import annotations

from dataclasses import dataclass

from app.dsr.deadlines import Week

WIDTH = 720
HEIGHT = 240
LEFT = 40
RIGHT = 44
TOP = 16
BOTTOM = 36
MEDIAN_SCALE_HOURS = 48  # the right axis: 0-48 h, so the 24 h line sits in the middle


@dataclass(frozen=True)
class Bar:
    """One week's bars and labels."""

    x: float
    width: float
    received_y: float
    received_h: float
    in_time_y: float
    in_time_h: float
    label: str
    week: Week

    @property
    def median_hours(self) -> str:
        """The median time to forward, for the label and the table."""
        return "-" if self.week.median_seconds is None else f"{self.week.median_seconds / 3600:.1f} h"


@dataclass(frozen=True)
class ChartGeometry:
    """Everything the SVG template draws."""

    width: int
    height: int
    plot_bottom: float
    plot_top: float
    left: float
    right: float
    max_count: int
    bars: list[Bar]
    median_points: str
    deadline_y: float


def geometry(weeks: list[Week]) -> ChartGeometry:
    """Bars for received / forwarded within 24 h (left axis) and a median-time line (right axis, hours)."""
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    bottom = TOP + plot_h
    top_count = max([w.received for w in weeks] + [1])
    slot = plot_w / max(len(weeks), 1)
    bars: list[Bar] = []
    points: list[str] = []
    for i, w in enumerate(weeks):
        x = LEFT + i * slot + slot * 0.15
        width = slot * 0.7
        rh = plot_h * w.received / top_count
        ih = plot_h * w.forwarded_in_time / top_count
        bars.append(Bar(round(x, 1), round(width, 1), round(bottom - rh, 1), round(rh, 1), round(bottom - ih, 1), round(ih, 1), f"{w.start:%m-%d}", w))
        if w.median_seconds is not None:
            hours = min(w.median_seconds / 3600, MEDIAN_SCALE_HOURS)
            points.append(f"{x + width / 2:.1f},{bottom - plot_h * hours / MEDIAN_SCALE_HOURS:.1f}")
    deadline_y = round(bottom - plot_h * 24 / MEDIAN_SCALE_HOURS, 1)
    return ChartGeometry(WIDTH, HEIGHT, bottom, TOP, LEFT, WIDTH - RIGHT, top_count, bars, " ".join(points), deadline_y)
