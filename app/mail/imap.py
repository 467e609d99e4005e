"""One IMAP pass: fetch each message of the inbox, ingest and commit it, then move it to the processed folder.

IMAP_URL is `imaps://USER:PASSWORD@HOST[:993]/MAILBOX?processed=FOLDER` (implicit
TLS) or `imap://...` (STARTTLS, refused if the server does not offer it);
the certificate is always verified (IMAP_CA_FILE adds a private CA).
A message is moved only after its ingest is committed: a crash in between
re-fetches it next time, and its Message-ID makes the second ingest a no-op.
"""

from __future__ import annotations

import imaplib
import logging
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from app.exceptions import Refused
from app.mail.transport import tls_failure, with_tls_floor

log = logging.getLogger(__name__)

DEFAULT_PROCESSED = "Processed"
MAX_PER_PASS = 500


class ImapError(Refused):
    """IMAP_URL is unusable or the server refused; the message is safe to show (no password)."""


@dataclass(frozen=True)
class ImapSettings:
    """Where and how to poll."""

    host: str
    port: int
    implicit_tls: bool
    username: str
    password: str
    mailbox: str = "INBOX"
    processed: str = DEFAULT_PROCESSED
    ca_file: str | None = None
    timeout: float = 60.0

    @classmethod
    def from_url(cls, url: str, *, ca_file: str | None = None) -> ImapSettings:
        """Parse IMAP_URL; ImapError names what is wrong, never the password."""
        parts = urlsplit(url)
        if parts.scheme not in ("imap", "imaps"):
            raise ImapError("IMAP_URL must start with imaps:// (TLS) or imap:// (STARTTLS)")
        if not parts.hostname or not parts.username or parts.password is None:
            raise ImapError("IMAP_URL must name a user, a password and a host: imaps://USER:PASSWORD@HOST/INBOX")
        query = parse_qs(parts.query)
        implicit = parts.scheme == "imaps"
        return cls(
            host=parts.hostname,
            port=parts.port or (993 if implicit else 143),
            implicit_tls=implicit,
            username=unquote(parts.username),
            password=unquote(parts.password),
            mailbox=unquote(parts.path.strip("/")) or "INBOX",
            processed=(query.get("processed") or [DEFAULT_PROCESSED])[0],
            ca_file=ca_file,
        )


@dataclass
class PollResult:
    """Counts of one pass (no personal data)."""

    fetched: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    moved: int = 0
    failed: int = 0
    statuses: list[str] = field(default_factory=list)


def _tls_context(settings: ImapSettings) -> ssl.SSLContext:
    return with_tls_floor(ssl.create_default_context(cafile=settings.ca_file))


def connect(settings: ImapSettings) -> imaplib.IMAP4:
    """A logged-in connection over verified TLS (implicit or STARTTLS)."""
    context = _tls_context(settings)
    conn: imaplib.IMAP4 | None = None
    try:
        if settings.implicit_tls:
            conn = imaplib.IMAP4_SSL(settings.host, settings.port, ssl_context=context, timeout=settings.timeout)
        else:
            conn = imaplib.IMAP4(settings.host, settings.port, timeout=settings.timeout)
            if "STARTTLS" not in conn.capabilities:
                raise ImapError("the IMAP server does not offer STARTTLS; refusing to send the password in clear")
            conn.starttls(ssl_context=context)
        conn.login(settings.username, settings.password)
        return conn
    except ImapError:
        _close(conn)
        raise
    except ssl.SSLError as exc:
        _close(conn)
        raise ImapError(tls_failure("IMAP", exc)) from None
    except imaplib.IMAP4.error as exc:
        _close(conn)
        raise ImapError(f"the IMAP server refused the login or command: {type(exc).__name__}") from None
    except OSError as exc:
        _close(conn)
        raise ImapError(f"cannot reach the IMAP server: {type(exc).__name__}") from None


def _close(conn: imaplib.IMAP4 | None) -> None:
    if conn is not None:
        try:
            conn.shutdown()
        except OSError:
            pass


def _check(typ: str, data: object, what: str) -> None:
    if typ != "OK":
        raise ImapError(f"IMAP {what} failed")


def _quote(name: str) -> str:
    # imaplib sends arguments as given: a mailbox name is an IMAP quoted string.
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ensure_folder(conn: imaplib.IMAP4, name: str) -> None:
    typ, data = conn.list('""', _quote(name))
    if typ == "OK" and any(item for item in data if item):
        return
    typ, _ = conn.create(_quote(name))
    if typ != "OK":
        # Another poller may have created it meanwhile; only a second failure to list is fatal.
        typ, data = conn.list('""', _quote(name))
        if typ != "OK" or not any(item for item in data if item):
            raise ImapError("cannot create the processed folder")


def _move(conn: imaplib.IMAP4, uid: str, folder: str) -> None:
    if "MOVE" in conn.capabilities:
        typ, data = conn.uid("MOVE", uid, _quote(folder))
        _check(typ, data, "MOVE")
        return
    typ, data = conn.uid("COPY", uid, _quote(folder))
    _check(typ, data, "COPY")
    typ, data = conn.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted)")
    _check(typ, data, "STORE")
    if "UIDPLUS" in conn.capabilities:
        conn.uid("EXPUNGE", uid)
    else:
        conn.expunge()


_LITERAL = re.compile(rb"BODY\[\]")


def poll_once(settings: ImapSettings, ingest: Callable[[bytes], str], *, limit: int = MAX_PER_PASS) -> PollResult:
    """Fetch, ingest (which commits) and only then move each message; returns counts.

    `ingest(raw)` returns "stored", "duplicate" or "quarantined" after its commit, or
    raises: the message stays in the mailbox for the next pass and the pass stops
    (a database outage should not be hammered message by message).
    """
    result = PollResult()
    conn = connect(settings)
    try:
        _ensure_folder(conn, settings.processed)
        typ, data = conn.select(_quote(settings.mailbox))
        _check(typ, data, "SELECT")
        typ, data = conn.uid("SEARCH", "UNDELETED")
        _check(typ, data, "SEARCH")
        uids = [u.decode("ascii") for u in (data[0] or b"").split()[:limit]] if data else []
        for uid in uids:
            typ, fetched = conn.uid("FETCH", uid, "(BODY.PEEK[])")
            _check(typ, fetched, "FETCH")
            raw = next((item[1] for item in fetched if isinstance(item, tuple) and _LITERAL.search(item[0])), None)
            if raw is None:
                continue  # expunged by another client meanwhile
            result.fetched += 1
            try:
                status = ingest(raw)
            except Exception as exc:
                result.failed += 1
                log.warning("IMAP poll: ingest failed (%s); the message stays for the next pass", type(exc).__name__)
                break
            result.statuses.append(status)
            if status == "stored":
                result.stored += 1
            elif status == "duplicate":
                result.duplicates += 1
            else:
                result.quarantined += 1
            _move(conn, uid, settings.processed)
            result.moved += 1
        conn.close()
    finally:
        try:
            conn.logout()
        except (imaplib.IMAP4.error, OSError):
            pass
    return result
