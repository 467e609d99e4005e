"""The SMTP transport against real servers on loopback: STARTTLS, implicit TLS, certificate checks, login, refusals."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from app.mail.transport import PermanentFailure, SmtpTransport, TemporaryFailure, parse_smtp_url
from tests.workers.smtp_support import SmtpServer, make_tls_material, password_check, running_smtp


def _message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "privacy@desk.example"
    msg["To"] = "dpo@controller.example"
    msg["Subject"] = "Sub-processor notice"
    msg["Message-ID"] = "<tls-test@desk.example>"
    msg.set_content("A new sub-processor.")
    return msg


def _send(url: str, *, ca: Path | None = None) -> str:
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    transport = SmtpTransport(parse_smtp_url(url), ssl_context=context)
    return transport.send(_message(), sender="privacy@desk.example", recipient="dpo@controller.example").response


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    return make_tls_material(tmp_path)


@pytest.fixture
def starttls_server(tls: tuple[Path, ssl.SSLContext]) -> Iterator[SmtpServer]:
    with running_smtp(tls_context=tls[1], require_starttls=True, authenticator=password_check("mailer", "s3cret pass"), auth_require_tls=True) as server:
        yield server


@pytest.fixture
def implicit_tls_server(tls: tuple[Path, ssl.SSLContext]) -> Iterator[SmtpServer]:
    with running_smtp(server_hostname="127.0.0.1", ssl_context=tls[1]) as server:
        yield server


@pytest.fixture
def plain_server() -> Iterator[SmtpServer]:
    with running_smtp() as server:
        yield server


def test_starttls_is_used_when_offered_and_the_login_travels_inside_it(starttls_server: SmtpServer, tls: tuple[Path, ssl.SSLContext]) -> None:
    response = _send(f"smtp://mailer:s3cret%20pass@127.0.0.1:{starttls_server.port}", ca=tls[0])
    assert response.startswith("250 ")
    assert len(starttls_server.received) == 1
    assert starttls_server.received[0].message["Message-ID"] == "<tls-test@desk.example>"


def test_an_untrusted_certificate_is_a_temporary_failure_and_nothing_is_sent(starttls_server: SmtpServer) -> None:
    # The default context trusts the system CAs only, not the test CA.
    with pytest.raises(TemporaryFailure, match="certificate"):
        _send(f"smtp://mailer:s3cret%20pass@127.0.0.1:{starttls_server.port}")
    assert starttls_server.received == []


def test_a_wrong_password_is_temporary_and_never_echoed(starttls_server: SmtpServer, tls: tuple[Path, ssl.SSLContext]) -> None:
    with pytest.raises(TemporaryFailure) as caught:
        _send(f"smtp://mailer:wrong-password-123@127.0.0.1:{starttls_server.port}", ca=tls[0])
    assert "wrong-password-123" not in caught.value.reason and "authentication" in caught.value.reason
    assert starttls_server.received == []


def test_implicit_tls_with_smtps(implicit_tls_server: SmtpServer, tls: tuple[Path, ssl.SSLContext]) -> None:
    assert _send(f"smtps://127.0.0.1:{implicit_tls_server.port}", ca=tls[0]).startswith("250 ")
    assert len(implicit_tls_server.received) == 1


def test_starttls_required_refuses_a_server_that_does_not_offer_it(plain_server: SmtpServer) -> None:
    with pytest.raises(TemporaryFailure, match="STARTTLS"):
        _send(f"smtp://127.0.0.1:{plain_server.port}?starttls=required")
    assert plain_server.received == []


def test_a_4xx_recipient_refusal_is_temporary_and_a_5xx_permanent(plain_server: SmtpServer) -> None:
    plain_server.handler.rcpt_reply = "451 4.3.0 <dpo@controller.example> greylisted, try later"
    with pytest.raises(TemporaryFailure) as temporary:
        _send(f"smtp://127.0.0.1:{plain_server.port}")
    assert "451" in temporary.value.reason and "dpo@controller.example" not in temporary.value.reason
    plain_server.handler.rcpt_reply = "550 5.1.1 unknown user"
    with pytest.raises(PermanentFailure, match="550"):
        _send(f"smtp://127.0.0.1:{plain_server.port}")
    assert plain_server.received == []
