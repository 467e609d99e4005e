"""Delivery status notifications (RFC 3464 `multipart/report; report-type=delivery-status`) -> what bounced. Pure.

A bounce names the email it returns by the original's Message-ID (in the
returned message or its returned headers: `message/rfc822`,
`text/rfc822-headers`, or the `X-Original-Message-ID`/`Original-Message-ID`
fields some MTAs add) and, when the outbox sent with a VERP-style envelope
sender (`<local>+bounce-<token>@<domain>`), by the address it was returned
to. `app.mail.bounces` matches either to the outbox row.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass, field
from email.message import Message

VERP_TAG = "bounce-"
_TOKEN = re.compile(r"^[0-9a-f]{32}$")
_MSGID = re.compile(r"<([\x21-\x3b\x3d\x3f-\x7e]{1,990})>")
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# A diagnostic often quotes the recipient: it is stored in the clear on the outbox row, so addresses are dropped.
_ADDRESS = re.compile(r"<?[^\s<>@;:]+@[^\s<>;]+>?")


@dataclass
class DeliveryReport:
    """What a DSN says: the action and status of the first failed recipient, and which email it returns."""

    action: str = ""
    status: str = ""
    diagnostic: str = ""
    original_message_ids: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """A permanent or temporary failure (not a delay or success notice)."""
        return self.action in ("failed", "") and not self.status.startswith("2")


def verp_key(token: str) -> str:
    """What an outbox row's `verp_bidx` is the keyed hash of, for the VERP token (its Message-ID's random part)."""
    return f"verp-token:{token.lower()}"


def verp_local(local: str, message_id: str) -> str:
    """The envelope sender's local part for an outbox row: `<local>+bounce-<the Message-ID's random part>`."""
    token = message_id.strip("<>").split(".", 1)[0]
    return f"{local.split('+', 1)[0]}+{VERP_TAG}{token}"


def return_path(sender: str, message_id: str) -> str:
    """The envelope sender (Return-Path) of an outbox row's email: `sender` with a `+bounce-<token>` tag naming the row."""
    local, at, domain = sender.rpartition("@")
    if not at or not _TOKEN.match(message_id.strip("<>").split(".", 1)[0]):
        return sender  # not an outbox Message-ID: the plain sender
    return f"{verp_local(local, message_id)}@{domain}"


def verp_tokens(recipients: list[str]) -> list[str]:
    """The outbox tokens of VERP return addresses among a bounce's recipients."""
    found = []
    for address in recipients:
        _prefix, plus, tag = address.partition("@")[0].lower().partition("+")
        if plus and tag.startswith(VERP_TAG) and _TOKEN.match(tag[len(VERP_TAG) :]):
            found.append(tag[len(VERP_TAG) :])
    return found


def _clean(value: object, limit: int) -> str:
    text = str(value or "")
    text = text.encode("utf-8", errors="replace").decode("utf-8") if not text.isascii() else text
    return " ".join(_ADDRESS.sub("[address]", _CONTROL.sub(" ", text)).split())[:limit]


def _returned_ids(part: Message) -> list[str]:
    ctype = part.get_content_type()
    inner: Message | None = None
    if ctype == "message/rfc822" or ctype == "message/global":
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload and isinstance(payload[0], Message) else None
    elif ctype in ("text/rfc822-headers", "message/global-headers"):
        data = part.get_payload(decode=True)
        if isinstance(data, bytes):
            inner = email.message_from_bytes(data, policy=email.policy.compat32)
    if inner is None:
        return []
    return _MSGID.findall(str(inner.get("Message-ID", "") or ""))


def delivery_report(msg: Message) -> DeliveryReport | None:
    """The report of a DSN, or None when the message is not one (never raises on content)."""
    if msg.get_content_type() != "multipart/report" or str(msg.get_param("report-type", "") or "").lower() != "delivery-status":
        return None
    report = DeliveryReport()
    for header in ("X-Original-Message-ID", "Original-Message-ID"):
        report.original_message_ids += _MSGID.findall(str(msg.get(header, "") or ""))
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/delivery-status", "message/global-delivery-status"):
            _read_status(part, report)
        else:
            report.original_message_ids += _returned_ids(part)
    return report


def _read_status(part: Message, report: DeliveryReport) -> None:
    payload = part.get_payload()
    blocks = [b for b in payload if isinstance(b, Message)] if isinstance(payload, list) else []
    if not blocks:  # a status part the parser left as text
        data = part.get_payload(decode=True)
        text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else str(payload or "")
        blocks = [email.message_from_string(chunk, policy=email.policy.compat32) for chunk in re.split(r"\r?\n\r?\n", text) if chunk.strip()]
    for block in blocks[1:] or blocks:  # the first block is per-message (Reporting-MTA), the rest per recipient
        action = _clean(block.get("Action"), 20).lower()
        status_match = _STATUS.search(str(block.get("Status", "") or ""))
        if not action and status_match is None:
            continue
        report.action = action
        report.status = ".".join(status_match.groups()) if status_match else ""
        report.diagnostic = _clean(block.get("Diagnostic-Code"), 480)
        if action in ("failed", "delayed") or report.status.startswith(("4", "5")):
            return
