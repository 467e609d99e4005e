"""How the outbox hands a built message over: SMTP (STARTTLS or implicit TLS, certificate verified) or `.eml` files.

Both report what happened as a SendResult or raise TemporaryFailure (try
again later) or PermanentFailure (the server refused this message). Reasons
are safe to store and log: server replies are scrubbed of addresses and the
SMTP login, and SMTP_URL is never echoed.
"""

from __future__ import annotations

import email.policy
import functools
import ipaddress
import os
import re
import smtplib
import ssl
import tempfile
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

from app.exceptions import DeskError

_ADDRESS_LIKE = re.compile(r"[^\s<>\"']+@[^\s<>\"']+")


class TransportError(DeskError):
    """Base of the transports' errors."""


class DeliveryFailure(TransportError):
    """A send attempt failed; `reason` is safe to store and log (no addresses, no secrets)."""

    permanent: bool = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason[:500]


class TemporaryFailure(DeliveryFailure):
    """Try again later: connection, TLS, authentication, 4xx replies."""


class PermanentFailure(DeliveryFailure):
    """The server refused this message or recipient (5xx): retrying cannot help."""

    permanent = True


class SmtpUrlError(TransportError, ValueError):
    """SMTP_URL is malformed; the message never contains the credentials."""


@dataclass(frozen=True)
class SendResult:
    """What the transport reports for an accepted message (safe to store)."""

    response: str
    already_delivered: bool = False


class Transport(Protocol):
    """Delivers one built message to one recipient."""

    def send(self, message: EmailMessage, *, sender: str, recipient: str) -> SendResult: ...

    def already_delivered(self, message_id: str) -> bool: ...


@dataclass(frozen=True)
class SmtpSettings:
    """SMTP_URL, parsed: smtp:// (STARTTLS when offered, or required) or smtps:// (implicit TLS)."""

    host: str
    port: int
    implicit_tls: bool
    starttls: Literal["auto", "required"]
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0

    @property
    def loopback(self) -> bool:
        """Whether the relay is on this machine (the only place credentials may travel without TLS)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_smtp_url(url: str) -> SmtpSettings:
    """smtp://[user:pass@]host[:port][?starttls=required&timeout=30] or smtps://...; errors never echo the URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise SmtpUrlError("SMTP_URL is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "smtps"):
        raise SmtpUrlError("SMTP_URL must start with smtp:// or smtps://")
    if not parts.hostname:
        raise SmtpUrlError("SMTP_URL must name a host")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = set(query) - {"starttls", "timeout"}
    if unknown:
        raise SmtpUrlError(f"SMTP_URL has unknown options: {', '.join(sorted(unknown))} (known: starttls, timeout)")
    starttls = query.get("starttls", "auto").lower()
    if starttls not in ("auto", "required"):
        raise SmtpUrlError("SMTP_URL starttls must be auto or required")
    if scheme == "smtps" and "starttls" in query:
        raise SmtpUrlError("SMTP_URL starttls applies to smtp:// only (smtps:// is TLS from the start)")
    try:
        timeout = float(query.get("timeout", "30"))
    except ValueError:
        raise SmtpUrlError("SMTP_URL timeout must be a number of seconds") from None
    return SmtpSettings(
        host=parts.hostname,
        port=port or (465 if scheme == "smtps" else 25),
        implicit_tls=scheme == "smtps",
        starttls="required" if starttls == "required" else "auto",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        timeout=timeout,
    )


# WECO §9.1(c): TLS 1.2 or newer wherever the desk speaks to the network (SMTP and IMAP clients).
TLS_FLOOR = ssl.TLSVersion.TLSv1_2
# OpenSSL's reasons when the peer speaks only a protocol older than the floor.
_OLD_PROTOCOL = frozenset({"UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION", "NO_PROTOCOLS_AVAILABLE", "WRONG_SSL_VERSION"})


def with_tls_floor(context: ssl.SSLContext) -> ssl.SSLContext:
    """The context with TLS 1.2 as its floor and certificate and hostname verification on (whatever the caller passed)."""
    if context.minimum_version < TLS_FLOOR or context.minimum_version == ssl.TLSVersion.MINIMUM_SUPPORTED:
        context.minimum_version = TLS_FLOOR
    if context.verify_mode != ssl.CERT_REQUIRED:
        context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    return context


def tls_failure(server: str, exc: ssl.SSLError) -> str:
    """A clear, safe reason for a failed TLS handshake with `server` ("SMTP", "IMAP")."""
    reason = str(exc.reason or type(exc).__name__)
    if reason in _OLD_PROTOCOL:
        return f"the {server} server offers only TLS older than 1.2, which the desk refuses (WECO §9.1(c)): {reason}"
    if isinstance(exc, ssl.SSLEOFError):
        # Some servers (asyncio's among them) hang up without an alert when no protocol version is common.
        return f"the {server} server ended the TLS handshake ({reason}): it may offer only TLS older than 1.2, which the desk refuses (WECO §9.1(c))"
    return f"TLS with the {server} server failed: {reason}"


@functools.cache
def default_tls_context() -> ssl.SSLContext:
    """The system's trust store with hostname checks and the TLS 1.2 floor, built once per process (loading the CA bundle costs ~0.3 s)."""
    return with_tls_floor(ssl.create_default_context())


class SmtpTransport:
    """Sends over SMTP with the certificate verified by the default SSL context."""

    def __init__(self, settings: SmtpSettings, *, ssl_context: ssl.SSLContext | None = None, local_hostname: str | None = None) -> None:
        self.settings = settings
        self.ssl_context = ssl_context
        self.local_hostname = local_hostname or "localhost"

    def already_delivered(self, message_id: str) -> bool:
        """SMTP cannot tell: the receiver de-duplicates by Message-ID."""
        return False

    def send(self, message: EmailMessage, *, sender: str, recipient: str) -> SendResult:
        """One SMTP transaction for one recipient; raises TemporaryFailure or PermanentFailure."""
        s = self.settings
        try:
            context = with_tls_floor(self.ssl_context) if self.ssl_context is not None else default_tls_context()
            client: smtplib.SMTP
            if s.implicit_tls:
                client = smtplib.SMTP_SSL(s.host, s.port, local_hostname=self.local_hostname, timeout=s.timeout, context=context)
            else:
                client = smtplib.SMTP(s.host, s.port, local_hostname=self.local_hostname, timeout=s.timeout)
            with client:
                return self._transaction(client, context, message, sender=sender, recipient=recipient)
        except DeliveryFailure:
            raise
        except ssl.SSLCertVerificationError:
            raise TemporaryFailure("TLS certificate of the SMTP server could not be verified") from None
        except ssl.SSLError as exc:
            raise TemporaryFailure(tls_failure("SMTP", exc)) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise TemporaryFailure(self._scrub(f"SMTP authentication failed: {exc.smtp_code}")) from None
        except smtplib.SMTPResponseException as exc:
            raise TemporaryFailure(self._scrub(f"SMTP error {exc.smtp_code}: {_text(exc.smtp_error)}")) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise TemporaryFailure(self._scrub(f"SMTP server unreachable or connection failed ({type(exc).__name__})")) from None

    def _transaction(self, client: smtplib.SMTP, context: ssl.SSLContext, message: EmailMessage, *, sender: str, recipient: str) -> SendResult:
        s = self.settings
        client.ehlo()
        tls = s.implicit_tls
        if not tls:
            if client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo()
                tls = True
            elif s.starttls == "required":
                raise TemporaryFailure("the SMTP server does not offer STARTTLS, which SMTP_URL requires")
        if s.username:
            if not tls and not s.loopback:
                raise TemporaryFailure("refusing to send SMTP credentials over a connection without TLS")
            client.login(s.username, s.password or "")
        international = not (sender + recipient).isascii()
        options: list[str] = []
        if international:
            if not client.has_extn("smtputf8"):
                raise PermanentFailure("the address needs SMTPUTF8, which the SMTP server does not offer")
            options = ["SMTPUTF8", "BODY=8BITMIME"]
        data = message.as_bytes(policy=email.policy.SMTPUTF8 if international else email.policy.SMTP)
        code, reply = client.mail(sender, options)
        if code != 250:
            client.rset()
            raise self._refusal("sender", code, reply)
        code, reply = client.rcpt(recipient)
        if code not in (250, 251):
            client.rset()
            raise self._refusal("recipient", code, reply)
        code, reply = client.data(data)
        if code != 250:
            raise self._refusal("message", code, reply)
        return SendResult(response=self._scrub(f"{code} {_text(reply)}"))

    def _refusal(self, what: str, code: int, reply: bytes) -> DeliveryFailure:
        reason = self._scrub(f"SMTP server refused the {what}: {code} {_text(reply)}")
        return PermanentFailure(reason) if 500 <= code < 600 else TemporaryFailure(reason)

    def _scrub(self, text: str) -> str:
        """Server replies may echo addresses or the login: keep neither."""
        for secret in (self.settings.password, self.settings.username):
            if secret:
                text = text.replace(secret, "***")
        return _ADDRESS_LIKE.sub("<address>", text)[:500]


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())


class FileTransport:
    """The embedded default: `<Message-ID>.eml` files in a folder, written atomically (temp file + rename)."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)

    def path_for(self, message_id: str) -> Path:
        """The file a Message-ID is written to."""
        name = re.sub(r"[^A-Za-z0-9._@+-]", "_", message_id.strip("<>"))
        return self.folder / f"{name}.eml"

    def already_delivered(self, message_id: str) -> bool:
        """The file exists: an earlier attempt wrote it completely (rename is atomic)."""
        return self.path_for(message_id).exists()

    def send(self, message: EmailMessage, *, sender: str, recipient: str) -> SendResult:
        """Write the message; readable by the owner only, since it holds personal data."""
        target = self.path_for(str(message["Message-ID"]))
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".eml", dir=self.folder)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(message.as_bytes(policy=email.policy.SMTPUTF8))
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            _fsync_dir(self.folder)
        except OSError as exc:
            raise TemporaryFailure(f"could not write to the file outbox ({type(exc).__name__})") from None
        return SendResult(response=f"written {target.name}")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
