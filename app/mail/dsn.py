"""Delivery status notifications (RFC 3464 `multipart/report; report-type=delivery-status`) -> what bounced. Pure.

A bounce names the email it returns by the original's Message-ID (in the
returned message or its returned headers: `message/rfc822`,
`text/rfc822-headers`, or the `X-Original-Message-ID`/`Original-Message-ID`
fields some MTAs add) and, when the outbox sent with a VERP-style envelope
sender (`<local>+bounce-<token>@<domain>`), by the address it was returned
to. `app.mail.bounces` matches either to the outbox row.

Mail to a VERP address that is not a DSN still names its row: a plain-text
bounce (qmail, appliances: from the null sender, MAILER-DAEMON or postmaster)
is read as a failure with the status its text gives, and an automatic reply
sent to the Return-Path (RFC 3834 §4: out-of-office replies go there) is an
"auto-replied" report, so neither opens a ticket (`returned_to_verp`).
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import quopri
import re
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

VERP_TAG = "bounce-"
_TOKEN = re.compile(r"^[0-9a-f]{32}$")
_MSGID = re.compile(r"<([\x21-\x3b\x3d\x3f-\x7e]{1,990})>")
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# A diagnostic often quotes the recipient: it is stored in the clear on the outbox row, so addresses are dropped.
_ADDRESS = re.compile(r"<?[^\s<>@;:]+@[^\s<>;]+>?")
_BLOCKS = re.compile(r"\r?\n[ \t]*\r?\n")
_RETURNED_ID = re.compile(r"(?im)^message-id:\s*<([\x21-\x3b\x3d\x3f-\x7e]{1,990})>")
_DAEMONS = ("mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon")
AUTO_REPLIED = "auto-replied"


@dataclass
class DeliveryReport:
    """What a DSN says: the action and status of the first failed recipient, and which email it returns."""

    action: str = ""  # RFC 3464 Action (failed, delayed, delivered, relayed, expanded), or "auto-replied" (`returned_to_verp`)
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


def _body_text(part: Message) -> str:
    """A part's body as text, whatever the parser made of it (a list of header blocks for message/*), its
    transfer encoding undone: base64 and quoted-printable status parts are real (some MTAs, SMTPUTF8 reports)."""
    try:
        payload = part.get_payload()
        if isinstance(payload, list):
            whole = part.as_string()
            found = _BLOCKS.search(whole)
            body = whole[found.end() :] if found is not None else ""
        else:
            body = str(payload or "")
        cte = str(part.get("Content-Transfer-Encoding", "") or "").strip().lower()
        if cte == "base64":
            return base64.b64decode("".join(body.split()), validate=False).decode("utf-8", errors="replace")
        if cte == "quoted-printable":
            return quopri.decodestring(body.encode("utf-8", errors="surrogateescape")).decode("utf-8", errors="replace")
        return body.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
    except (binascii.Error, ValueError, LookupError, UnicodeError):
        return ""


def _body_text_of(payload: list[Any]) -> str:
    # The parser took an encoded message/rfc822 body for a message: its text is the encoded original, undo that.
    body = "".join(p.as_string() if isinstance(p, Message) and p.is_multipart() else str(p.get_payload() if isinstance(p, Message) else p) for p in payload)
    try:
        return base64.b64decode("".join(body.split()), validate=False).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return ""


def _returned_ids(part: Message) -> list[str]:
    ctype = part.get_content_type()
    if ctype in ("message/rfc822", "message/global"):
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload and isinstance(payload[0], Message) else None
        found = _MSGID.findall(str(inner.get("Message-ID", "") or "")) if inner is not None else []
        if found or str(part.get("Content-Transfer-Encoding", "") or "").strip().lower() not in ("base64", "quoted-printable"):
            return found
        # Encoded against RFC 2046 §5.2.1 (some gateways base64 the returned message): read it decoded.
        text = _body_text(part) if not isinstance(payload, list) else _body_text_of(payload)
        return _MSGID.findall(str(email.message_from_string(text, policy=email.policy.compat32).get("Message-ID", "") or ""))
    if ctype in ("text/rfc822-headers", "message/rfc822-headers", "message/global-headers"):
        inner = email.message_from_string(_body_text(part), policy=email.policy.compat32)
        return _MSGID.findall(str(inner.get("Message-ID", "") or ""))
    return []


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
    plain = part.get_content_type() == "message/delivery-status" and str(part.get("Content-Transfer-Encoding", "") or "").lower() in ("", "7bit", "8bit")
    if not plain or len(blocks) < 2:
        # Encoded, or a type the parser does not split into blocks (message/global-delivery-status): read the text.
        text = _body_text(part)
        blocks = [email.message_from_string(chunk, policy=email.policy.compat32) for chunk in _BLOCKS.split(text) if chunk.strip()] or blocks
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


def returned_to_verp(msg: Message, recipients: list[str], *, automatic: bool) -> DeliveryReport | None:
    """A report for mail that is no DSN but reports on an outbox row, or None. Mail to a row's VERP address: a
    plain-text bounce (from the null sender or a mailer daemon) as a failure with the first status code its text gives
    (5.0.0 when none), an `automatic` reply (an out-of-office sent to the Return-Path) as "auto-replied". Mail from a
    mailer daemon to any address whose text quotes a returned Message-ID line (Exchange's "Undeliverable" with a
    winmail.dat) likewise: the row it names is found by that id, else it is held as an unmatched bounce. A person's
    mail is None."""
    verp = bool(verp_tokens(recipients))
    sender = str(msg.get("From", "") or "").lower()
    daemon = str(msg.get("Return-Path", "") or "").strip() == "<>" or any(f"{name}@" in sender for name in _DAEMONS)
    if not daemon:
        return DeliveryReport(action=AUTO_REPLIED) if verp and automatic else None
    text = "\n".join(_body_text(part) for part in msg.walk() if part.get_content_maintype() in ("text", "message") and not part.is_multipart())
    returned = _RETURNED_ID.findall(text)[:5]
    if not verp and not returned:
        return None
    found = _STATUS.search(text)
    status = ".".join(found.groups()) if found is not None else "5.0.0"
    line = next((ln for ln in text.splitlines() if found is not None and found.group(0) in ln), "")
    return DeliveryReport(
        action="delayed" if status.startswith("4") else "delivered" if status.startswith("2") else "failed",
        status=status,
        diagnostic=_clean(line, 480),
        original_message_ids=returned,
    )


def disposition_ids(msg: Message) -> list[str]:
    """The Message-IDs a read receipt (RFC 8098 MDN: multipart/report; report-type=disposition-notification) reports on,
    from its Original-Message-ID fields; [] for any other message. A receipt answers that email, like a reply."""
    if msg.get_content_type() != "multipart/report" or str(msg.get_param("report-type", "") or "").lower() != "disposition-notification":
        return []
    found = _MSGID.findall(str(msg.get("Original-Message-ID", "") or ""))
    for part in msg.walk():
        if part.get_content_type() == "message/disposition-notification":
            found += _MSGID.findall(str(email.message_from_string(_body_text(part), policy=email.policy.compat32).get("Original-Message-ID", "") or ""))
    return found[:5]
