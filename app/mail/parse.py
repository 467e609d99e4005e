"""RFC 5322 / MIME bytes -> a `ParsedMail` (pure: no database, no Flask).

Inbound mail is untrusted. Every header is read defensively (a header that the
strict parser rejects is read raw), every charset has a fallback, archives are
never unpacked, and parts over the size limit are dropped with a note. The one
way out besides a ParsedMail is `MalformedMessage`, whose `reason` is a
quarantine reason code.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
import weakref
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses, parseaddr
from html import unescape as html_unescape
from typing import Any
from urllib.parse import unquote

import nh3
from mailparser_reply import EmailReplyParser

from app.exceptions import Refused
from app.mail import autoreply, calendar
from app.mail.decode import decode_bytes, decode_words, header_codec, html_meta_charset, safe_text, unescape_header, unflow
from app.mail.dsn import DeliveryReport, delivery_report, disposition_ids, returned_to_verp

MAX_PARTS = 250
MAX_DEPTH = 12
MAX_HEADER_CHARS = 998 * 4
REPLY_LANGUAGES = ["en", "de", "fr", "es", "it", "nl"]
# Printable ASCII only: a NUL or control character in an id must not reach a database index.
_MSGID = re.compile(r"<([\x21-\x3b\x3d\x3f-\x7e]{1,990})>")
_BARE_MSGID = re.compile(r"[\x21-\x3b\x3d\x3f-\x7e]{1,990}")
_CID = re.compile(r"[^\x21-\x7e]")
_CALENDAR_TYPES = ("text/calendar", "application/ics", "text/x-vcalendar", "application/x-ics")
_IMG_SRC = re.compile(r"""(\b(?:src|background)\s*=\s*["']?)([^"'\s>]{1,500})""", re.IGNORECASE)
_SPACE = re.compile(r"[ \t]*\n{3,}")
_TOKEN = re.compile(r"[^a-z0-9!#$&^_.+/-]")
# C0 controls and DEL never belong in a header value; NUL would break any database text column.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class MalformedMessage(Refused):
    """The bytes cannot be taken as mail; `reason` is a quarantine reason code, `detail` is safe to store."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class ParsedAttachment:
    """A file part: its name, type and decoded bytes."""

    filename: str | None
    content_type: str
    content: bytes
    content_id: str | None = None  # an inline part's Content-ID (without <>), for cid: references in the HTML


@dataclass
class ParsedMail:
    """What the desk takes from one message."""

    message_id: str
    has_message_id: bool
    in_reply_to: list[str]
    references: list[str]
    subject: str
    from_name: str
    from_email: str
    recipients: list[str]
    body_text: str
    body_html: str | None
    reply_text: str
    attachments: list[ParsedAttachment] = field(default_factory=list)
    is_auto_reply: bool = False
    flags: list[str] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    report: DeliveryReport | None = None  # a delivery status notification: what bounced
    # The original to store when parts were dropped for their size: those parts replaced by a short text part.
    stored_raw: bytes | None = None


# The raw header values of each message being parsed, read once: the policy's header objects
# are parsed anew on every access, which cost most of the parsing time; only what is used gets
# decoded. Kept only as long as the message object lives.
_RAW_HEADERS: weakref.WeakKeyDictionary[Message, dict[str, list[str]]] = weakref.WeakKeyDictionary()


def _raw_headers(msg: Message, codec: str | None = None) -> dict[str, list[str]]:
    cached = _RAW_HEADERS.get(msg)
    if cached is None:
        cached = {}
        for key, value in msg.raw_items():
            # Raw 8-bit bytes (RFC 6532 UTF-8 or a legacy charset) come as surrogate escapes: decode them now.
            text, _ = unescape_header(str(value), codec)
            cached.setdefault(safe_text(key).lower(), []).append(text)
        _RAW_HEADERS[msg] = cached
    return cached


def _read_raw_headers(msg: Message) -> None:
    """Every part's headers read at once, raw 8-bit bytes in a legacy charset decoded as one guess over all of them:
    a sender that writes them raw writes them all in its one charset, and a name alone is too short to guess."""
    parts = list(msg.walk())[:MAX_PARTS]
    codec = header_codec([str(v) for part in parts for _, v in part.raw_items()])
    for part in parts:
        _raw_headers(part, codec)


def _decode_words(value: str) -> str:
    return decode_words(value)


def _header(msg: Message, name: str) -> str:
    """A header as text (RFC 2047 words decoded); a value that cannot be decoded is returned raw, never raised."""
    values = _raw_headers(msg).get(name.lower())
    if not values:
        return ""
    return " ".join(_CONTROL.sub("", _decode_words(values[0])).split())[:MAX_HEADER_CHARS]


def _message_ids(value: str) -> list[str]:
    """The ids in a Message-ID, In-Reply-To or References value; ids without angle brackets (RFC 5322's obsolete
    syntax, still written by some clients) count when the value has no bracketed one: each token with one @."""
    found = _MSGID.findall(value or "")
    return found or [t for t in (value or "").split()[:100] if t.count("@") == 1 and _BARE_MSGID.fullmatch(t)]


def _address_parts(msg: Message, name: str) -> list[tuple[str, str]]:
    raw = [" ".join(_CONTROL.sub("", v).split()) for v in _raw_headers(msg).get(name.lower(), [])]
    return [(_decode_words(n), a) for n, a in getaddresses(raw) if "@" in a]


def _decode_text(part: Message, notes: list[dict[str, Any]]) -> str:
    payload = part.get_payload(decode=True)
    raw = payload if isinstance(payload, bytes) else b""
    label = part.get_param("charset") if "charset" in str(part.get("Content-Type", "")).lower() else None
    if not isinstance(label, str) and part.get_content_type() == "text/html":
        label = html_meta_charset(raw)  # no label on the part: the document's own <meta charset>, as browsers read it
    text, note = decode_bytes(raw, label if isinstance(label, str) else None)
    if note is not None:
        notes.append({"code": "charset_fallback", "declared": _TOKEN.sub("", str(label or "none").lower())[:40] or "none"})
    if part.get_content_type() == "text/plain" and str(part.get_param("format") or "").lower() == "flowed":
        text = unflow(text, delsp=str(part.get_param("delsp") or "").lower() == "yes")
    return text


def _filename(part: Message) -> str | None:
    headers = _raw_headers(part)
    named = [(key, value) for key in ("content-disposition", "content-type") for value in headers.get(key, [])]
    if not all(value.isascii() for _, value in named):
        # Raw 8-bit bytes (RFC 6532): the parser's header would turn them into U+FFFD; read the decoded text instead.
        view = Message(policy=email.policy.compat32)
        for key, value in named:
            view[key] = value
        part = view
    try:
        name = part.get_filename()
    except Exception:  # a broken RFC 2231 parameter
        name = None
    if not name:
        return None
    name = decode_words(str(name)) if "=?" in str(name) else str(name)  # RFC 2047 words in a parameter (Outlook, Gmail)
    return " ".join(safe_text(name).replace("/", "_").replace("\\", "_").split())[:255] or None


def _inline_references(html: str, attachments: list[ParsedAttachment], locations: dict[str, str]) -> str:
    """Each image reference in the HTML spelled as its part's Content-ID exactly, so the ingest can point it at the
    stored part: `cid:` URLs percent-decoded and matched without regard to case (RFC 2392; Outlook changes the case),
    and plain URLs that are a part's Content-Location (RFC 2557) turned into `cid:` references."""
    ids = {_cid_key(a.content_id): a.content_id for a in attachments if a.content_id}
    located = {name.lower(): cid for name, cid in locations.items()}

    def fix(match: re.Match[str]) -> str:
        value = html_unescape(match.group(2))
        if value[:4].lower() == "cid:":
            found = ids.get(_cid_key(value[4:]))
        else:
            found = located.get(value.lower())
        return f"{match.group(1)}cid:{found}" if found else match.group(0)

    return _IMG_SRC.sub(fix, html)


def _cid_key(value: str) -> str:
    return _CID.sub("", unquote(value).strip().strip("<>")).lower()


def _encoded_size(part: Message) -> int:
    payload = part.get_payload()
    if not isinstance(payload, str):
        return 0
    cte = (part.get("Content-Transfer-Encoding") or "").strip().lower()
    return len(payload) * 3 // 4 if cte == "base64" else len(payload)


def _html_to_text(html: str) -> str:
    text = nh3.clean(re.sub(r"(?i)<br\s*/?>|</p>|</div>|</tr>|</h\d>", "\n", html), tags=set())
    text = text.replace("&nbsp;", " ").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&#39;", "'")
    return _SPACE.sub("\n\n", text).strip()


def extract_reply(text: str) -> str:
    """The new text of a reply without quoted history and signature (mail-parser-reply); the whole text if that leaves nothing."""
    if not text.strip():
        return ""
    try:
        parsed = EmailReplyParser(languages=REPLY_LANGUAGES).read(text)
        reply = parsed.replies[0].body if parsed.replies else ""
    except Exception:  # a regex edge case must not lose the message: keep the whole text
        reply = ""
    # Quoted lines left below the new text by clients the library misses.
    lines = (reply or "").splitlines()
    while lines and (lines[-1].startswith(">") or not lines[-1].strip()):
        lines.pop()
    return "\n".join(lines).strip() or text.strip()


def auto_reply_reason(msg: Message, subject: str) -> str | None:
    """Why this message is automatic (`app.mail.autoreply`), or None for a person's mail."""
    return autoreply.auto_reply_reason(lambda name: _header(msg, name), subject=subject, content_type=msg.get_content_type())


def _domain(address: str) -> str:
    return address.rpartition("@")[2].strip().strip(">").lower()


def parse_mail(raw: bytes, *, attachment_max_bytes: int, envelope: str = "") -> ParsedMail:
    """Parse one message; MalformedMessage when it cannot be taken as mail. `envelope`: the MTA's recipient (a bounce
    to our VERP address often shows it only there)."""
    if not raw or not raw.strip():
        raise MalformedMessage("empty", "no bytes were received")
    try:
        # compat32: header values stay strings. The desk decodes the few it reads itself (`_header`, `_filename`);
        # the default policy parsed a header object on every access (content types and parameters were read
        # about ten times a message), the largest share of the parsing time.
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    except Exception as exc:  # the stdlib parser is lenient; this is a last resort
        raise MalformedMessage("malformed", f"parser failed: {type(exc).__name__}") from None
    if not msg.keys():
        raise MalformedMessage("malformed", "no header section")
    if not raw.isascii():
        _read_raw_headers(msg)
    notes: list[dict[str, Any]] = []
    flags: list[str] = []
    defects = {type(d).__name__ for d in msg.defects}
    if "MissingHeaderBodySeparatorDefect" in defects and len(msg.keys()) < 2:
        raise MalformedMessage("malformed", "no header section")
    if defects:
        notes.append({"code": "header_defects", "kinds": sorted(defects)[:10]})

    senders = _address_parts(msg, "From")
    if not senders:
        name, addr = parseaddr(_header(msg, "Sender") or _header(msg, "Reply-To"))
        if "@" not in addr:
            raise MalformedMessage("no_sender", "no usable From address")
        senders = [(name, addr)]
        flags.append("from_missing")
    from_name, from_email = senders[0]
    from_email = from_email.strip().strip("<>").lower()[:320]

    subject = _header(msg, "Subject")[:998]
    raw_id = _message_ids(_header(msg, "Message-ID"))
    has_id = bool(raw_id)
    # Without a Message-ID the content itself identifies the message, so a re-delivery is still a no-op.
    message_id = raw_id[0] if has_id else f"{hashlib.sha256(raw).hexdigest()}@no-message-id.invalid"
    if not has_id:
        notes.append({"code": "message_id_missing"})

    return_path = parseaddr(_header(msg, "Return-Path"))[1]
    if return_path and "@" in return_path and _domain(return_path) != _domain(from_email):
        flags.append("return_path_mismatch")
    if "dmarc=fail" in _header(msg, "Authentication-Results").lower():
        flags.append("dmarc_fail")

    recipients = [a.lower() for name in ("Delivered-To", "X-Original-To", "Envelope-To", "To", "Cc") for _, a in _address_parts(msg, name)]

    body_text: str | None = None
    body_html: str | None = None
    attachments: list[ParsedAttachment] = []
    attached_bytes = 0
    count = 0
    dropped = 0
    auto = auto_reply_reason(msg, subject)
    report = delivery_report(msg) or returned_to_verp(msg, [*recipients, envelope.strip().lower()], automatic=auto is not None)
    invitations: list[str] = []
    oversized: list[Message] = []
    locations: dict[str, str] = {}

    def visit(part: Message, depth: int) -> None:
        nonlocal body_text, body_html, attached_bytes, count, dropped
        count += 1
        if count > MAX_PARTS or depth > MAX_DEPTH:
            dropped += 1
            return
        ctype = _TOKEN.sub("", part.get_content_type())[:127] or "application/octet-stream"
        if ctype == "message/disposition-notification":
            return  # a read receipt's status part: its Original-Message-ID is read by app.mail.dsn (disposition_ids)
        if part.is_multipart() and ctype != "message/rfc822":
            payload = part.get_payload()
            for sub in payload if isinstance(payload, list) else []:
                if isinstance(sub, Message):
                    visit(sub, depth + 1)
            return
        disposition = (part.get_content_disposition() or "").lower()
        filename = _filename(part)
        is_body = disposition != "attachment" and filename is None and ctype in ("text/plain", "text/html")
        if is_body and ctype == "text/plain" and body_text is None:
            body_text = _decode_text(part, notes)
            return
        if is_body and ctype == "text/html" and body_html is None:
            body_html = _decode_text(part, notes)
            return
        if report is not None:
            return  # a bounce's status parts and the returned message are read by app.mail.dsn, not kept as files
        if ctype in _CALENDAR_TYPES or (filename or "").lower().endswith((".ics", ".vcs")):
            invitation = calendar.read_invitation(_decode_text(part, notes))
            if invitation is not None and invitation.describe() not in invitations:  # Outlook sends it twice
                invitations.append(invitation.describe())
                notes.append({"code": "invitation", "summary": invitation.summary, "start": invitation.start, "method": invitation.method})
            filename = filename if filename and filename.lower().endswith(".ics") else "invitation.ics"
        # Everything else is a file, archives included: never unpacked, only counted against the limit.
        if _encoded_size(part) > attachment_max_bytes - attached_bytes:
            notes.append({"code": "attachment_dropped", "reason": "over_limit", "content_type": ctype[:100], "approx_size": _encoded_size(part)})
            oversized.append(part)
            return
        if ctype == "message/rfc822":
            inner = part.get_payload()
            content = inner[0].as_bytes() if isinstance(inner, list) and inner and isinstance(inner[0], Message) else b""
        else:
            decoded = part.get_payload(decode=True)
            content = decoded if isinstance(decoded, bytes) else b""
        if attached_bytes + len(content) > attachment_max_bytes:
            notes.append({"code": "attachment_dropped", "reason": "over_limit", "content_type": ctype[:100], "approx_size": len(content)})
            oversized.append(part)
            return
        attached_bytes += len(content)
        content_id = _CID.sub("", str(part.get("Content-ID", "") or "").strip().strip("<>"))[:250] or None
        location = _CID.sub("", str(part.get("Content-Location", "") or ""))[:250]
        if content_id is None and location:
            content_id = f"location-{count}@content-location.invalid"  # RFC 2557: the HTML names this part by its location
            locations[location] = content_id
        attachments.append(ParsedAttachment(filename=filename or f"part-{count}", content_type=ctype, content=content, content_id=content_id))

    try:
        visit(msg, 0)
    except Exception as exc:  # a structure the stdlib cannot walk
        raise MalformedMessage("malformed", f"MIME structure unreadable: {type(exc).__name__}") from None
    if dropped:
        notes.append({"code": "parts_dropped", "reason": "too_many_or_too_deep", "count": dropped})

    if body_html and attachments:
        body_html = _inline_references(body_html, attachments, locations)
    text = body_text if body_text is not None else (_html_to_text(body_html) if body_html else "")
    if invitations:
        flags.append("invitation")
        text = "\n\n".join([*invitations, text]).strip()
    if auto:
        flags.append(f"auto:{auto}")
    return ParsedMail(
        message_id=message_id,
        has_message_id=has_id,
        in_reply_to=_message_ids(_header(msg, "In-Reply-To")) or disposition_ids(msg),  # a read receipt answers what it reports on
        references=_message_ids(_header(msg, "References")),
        subject=subject,
        from_name=" ".join(str(from_name).split())[:200],
        from_email=from_email,
        recipients=recipients,
        body_text=text,
        body_html=body_html,
        reply_text=extract_reply(text),
        attachments=attachments,
        is_auto_reply=auto is not None,
        flags=flags,
        notes=notes,
        report=report,
        stored_raw=_without_parts(msg, oversized) if oversized else None,
    )


def _without_parts(msg: Message, parts: list[Message]) -> bytes:
    """The message again with each of `parts` replaced by one line of text (the dropped attachment is not kept)."""
    for part in parts:
        for header in ("Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "Content-ID"):
            del part[header]
        part["Content-Type"] = "text/plain; charset=us-ascii"
        part.set_payload("[An attachment over the desk's size limit was removed on arrival.]\n")
    return msg.as_bytes(policy=msg.policy.clone(max_line_length=0))
