"""Calendar invitations (RFC 5545 `text/calendar` parts) -> a line the ticket can show. Pure, read-only.

Only the first VEVENT's SUMMARY, DTSTART, DTEND, LOCATION, STATUS and its first
ATTENDEE's PARTSTAT are read (folded lines unfolded, escapes undone), with the
calendar's METHOD (RFC 5546 iTIP: REQUEST, CANCEL, REPLY, COUNTER...), so the ticket
says whether it is an invitation, a cancellation or an attendee's answer; a time
with a TZID names its zone. The part itself is kept as an `.ics` attachment.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

_FIELDS = ("SUMMARY", "DTSTART", "DTEND", "LOCATION", "METHOD", "STATUS", "ATTENDEE")
_TZID = re.compile(r";TZID=\"?([^;:\"]{1,64})", re.IGNORECASE)
_PARTSTAT = re.compile(r";PARTSTAT=([A-Za-z-]{1,20})", re.IGNORECASE)
# What the ticket calls an iTIP message, by METHOD (RFC 5546 §1.4).
_KIND = {"CANCEL": "Cancelled", "REPLY": "Reply to invitation", "COUNTER": "Counter-proposal", "DECLINECOUNTER": "Counter-proposal declined",
         "REFRESH": "Invitation refresh", "ADD": "Invitation (added occurrence)"}  # fmt: skip
_ESCAPES = {"\\n": "\n", "\\N": "\n", "\\,": ",", "\\;": ";", "\\\\": "\\"}


@dataclass(frozen=True)
class Invitation:
    """What an invite says: its title, start and end (as written, or UTC ISO when parsed), place and method."""

    summary: str
    start: str
    end: str
    location: str
    method: str
    answer: str = ""  # a REPLY's participation status, lower case ("accepted", "declined", "tentative")
    cancelled: bool = False  # METHOD:CANCEL or STATUS:CANCELLED

    def describe(self) -> str:
        """The lines shown on the ticket, e.g. "Invitation: Onboarding call" and "When: 2026-12-02 14:00 UTC - 15:00 UTC";
        "Cancelled: ..." for a cancellation, "Reply to invitation: ... (declined)" for an attendee's answer."""
        when = " - ".join(x for x in (self.start, self.end) if x)
        kind = "Cancelled" if self.cancelled else _KIND.get(self.method.upper(), "Invitation")
        answer = f" ({self.answer})" if self.answer and kind == "Reply to invitation" else ""
        parts = [f"{kind}: {self.summary or '(no title)'}{answer}"]
        if when:
            parts.append(f"When: {when}")
        if self.location:
            parts.append(f"Where: {self.location}")
        return "\n".join(parts)


def _when(field: str) -> str:
    """A DATE or DATE-TIME property (its parameters included) as shown: UTC marked, a TZID's zone named."""
    params, _, value = field.rpartition(":") if ":" in field else ("", "", field)
    zone = _TZID.search(params)
    shown = _moment(value)
    return f"{shown} ({zone.group(1).strip()})" if zone is not None and shown and not shown.endswith("UTC") and len(shown) > 10 else shown


def _moment(value: str) -> str:
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
                # Dates keep their parameters (the TZID), an attendee its PARTSTAT; the rest is the value.
                found[key] = line if key in ("DTSTART", "DTEND", "ATTENDEE") else value
    if not in_event:
        return None
    partstat = _PARTSTAT.search(found.get("ATTENDEE", "").partition(":")[0]) if found.get("METHOD", "").strip().upper() == "REPLY" else None
    return Invitation(
        summary=" ".join(_unescape(found.get("SUMMARY", "")).split())[:200],
        start=_when(found.get("DTSTART", "")),
        end=_when(found.get("DTEND", "")),
        location=" ".join(_unescape(found.get("LOCATION", "")).split())[:200],
        method=found.get("METHOD", "")[:20],
        answer=partstat.group(1).lower() if partstat is not None else "",
        cancelled=found.get("METHOD", "").strip().upper() == "CANCEL" or found.get("STATUS", "").strip().upper() == "CANCELLED",
    )
