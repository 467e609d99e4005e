"""Calendar invitations (RFC 5545 `text/calendar` parts) -> a line the ticket can show. Pure, read-only.

Only the first VEVENT's SUMMARY, DTSTART, DTEND and LOCATION are read (folded
lines unfolded, escapes undone); the part itself is kept as an `.ics` attachment.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

_FIELDS = ("SUMMARY", "DTSTART", "DTEND", "LOCATION", "METHOD")
_ESCAPES = {"\\n": "\n", "\\N": "\n", "\\,": ",", "\\;": ";", "\\\\": "\\"}


@dataclass(frozen=True)
class Invitation:
    """What an invite says: its title, start and end (as written, or UTC ISO when parsed), place and method."""

    summary: str
    start: str
    end: str
    location: str
    method: str

    def describe(self) -> str:
        """The line shown on the ticket, e.g. "Invitation: Onboarding call, 2026-12-02 14:00 UTC - 15:00 UTC"."""
        when = " - ".join(x for x in (self.start, self.end) if x)
        parts = [f"Invitation: {self.summary or '(no title)'}"]
        if when:
            parts.append(f"When: {when}")
        if self.location:
            parts.append(f"Where: {self.location}")
        return "\n".join(parts)


def _when(value: str) -> str:
    value = value.strip()
    for fmt, utc in (("%Y%m%dT%H%M%SZ", True), ("%Y%m%dT%H%M%S", False), ("%Y%m%d", False)):
        try:
            moment = dt.datetime.strptime(value, fmt)
        except ValueError:
            continue
        if fmt == "%Y%m%d":
            return moment.strftime("%Y-%m-%d")
        return moment.strftime("%Y-%m-%d %H:%M") + (" UTC" if utc else "")
    return value[:40]


def _unescape(value: str) -> str:
    return re.sub(r"\\[nN,;\\]", lambda m: _ESCAPES[m.group(0)], value)


def read_invitation(text: str) -> Invitation | None:
    """The first event of an iCalendar text, or None when it has none."""
    unfolded = re.sub(r"\r?\n[ \t]", "", text)
    found: dict[str, str] = {}
    in_event = False
    for line in unfolded.splitlines():
        upper = line.upper()
        if upper.startswith("METHOD:"):
            found.setdefault("METHOD", line.partition(":")[2].strip())
        if upper == "BEGIN:VEVENT":
            in_event = True
        elif upper == "END:VEVENT":
            break
        elif in_event:
            name, _, value = line.partition(":")
            key = name.split(";", 1)[0].upper()
            if key in _FIELDS and key not in found:
                found[key] = value
    if not in_event:
        return None
    return Invitation(
        summary=" ".join(_unescape(found.get("SUMMARY", "")).split())[:200],
        start=_when(found.get("DTSTART", "")),
        end=_when(found.get("DTEND", "")),
        location=" ".join(_unescape(found.get("LOCATION", "")).split())[:200],
        method=found.get("METHOD", "")[:20],
    )
