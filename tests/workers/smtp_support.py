"""A real SMTP server on loopback for outbox tests (aiosmtpd), that can be stopped, restarted and made to stall."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.loopback import free_port, make_certificates


def wait_for(predicate: Callable[[], Any], *, timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll until predicate() is truthy; fail the test with a timeout otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@dataclass
class Received:
    """One message as the server accepted it."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Handler:
    """Records accepted messages; can refuse recipients or stall mid-transaction (to kill a client there)."""

    received: list[Received] = field(default_factory=list)
    rcpt_reply: str | None = None  # e.g. "451 4.3.0 try later" or "550 5.1.1 unknown"
    refuse: set[str] = field(default_factory=set)  # recipients answered with 550 (the others accepted)
    data_delay: float = 0.0  # seconds between the end of DATA and the server's 250 (a kill then: nothing accepted)
    stall_at: str | None = None  # "rcpt" or "data": hold the first transaction there
    stalled: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    async def _stall(self, where: str) -> None:
        if self.stall_at == where and not self.stalled.is_set():
            self.stalled.set()
            while not self.release.is_set():
                await asyncio.sleep(0.02)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        await self._stall("rcpt")
        if self.rcpt_reply:
            return self.rcpt_reply
        if address.lower() in self.refuse:
            return "550 5.1.1 <" + address + ">: Recipient address rejected: User unknown in virtual mailbox table"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
            if server.transport is None or server.transport.is_closing():
                return "451 4.3.0 client went away"  # the client never hears a 250: not accepted
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content or envelope.content)))
        await self._stall("data")
        return f"250 2.0.0 Ok: queued as Q{len(self.received)}"


class SmtpServer:
    """aiosmtpd on a fixed loopback port; `stop()` then `start()` simulates an outage."""

    def __init__(self, **smtp_kwargs: Any) -> None:
        self.port = free_port()
        self.handler = Handler()
        self.smtp_kwargs = smtp_kwargs
        self._controller: Controller | None = None

    def start(self) -> None:
        """Listen (again) on the same port."""
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **self.smtp_kwargs)
        self._controller.start()

    def stop(self) -> None:
        """Close the port: connections are refused until `start()`."""
        self.handler.release.set()
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def received(self) -> list[Received]:
        return self.handler.received


@contextmanager
def running_smtp(**smtp_kwargs: Any) -> Iterator[SmtpServer]:
    """A started SmtpServer (aiosmtpd keyword arguments passed on), stopped when the block ends."""
    server = SmtpServer(**smtp_kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def make_tls_material(folder: Path) -> tuple[Path, ssl.SSLContext]:
    """A throw-away CA and a server certificate for 127.0.0.1; returns (CA file, server context)."""
    ca_file, cert_file, key_file = make_certificates(folder)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    return ca_file, server


def password_check(username: str, password: str) -> Callable[..., AuthResult]:
    """An aiosmtpd authenticator accepting one login."""

    def check(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.login == username.encode() and auth_data.password == password.encode()
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

    return check
