"""Issue 15 item 7 (WECO §9.1(c)): the SMTP and IMAP clients refuse TLS older than 1.2 and unverified certificates,
with a clear error, against real loopback servers that offer only TLS 1.1."""

from __future__ import annotations

import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import aiosmtpd.controller
import pytest

from app.mail.imap import ImapError, ImapSettings, connect
from app.mail.transport import SmtpTransport, TemporaryFailure, parse_smtp_url
from tests.loopback import make_certificates
from tests.workers.smtp_support import SmtpServer, running_smtp

OLD_TLS = "only TLS older than 1.2, which the desk refuses"


def tls11_only(folder: Path) -> tuple[Path, ssl.SSLContext]:
    """A server context that speaks TLS 1.1 and nothing newer (OpenSSL needs security level 0 for it)."""
    ca_file, cert_file, key_file = make_certificates(folder)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1_1 is deprecated: that is the point
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    return ca_file, context


def _message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"], msg["Message-ID"] = "privacy@desk.example", "dpo@controller.example", "Notice", "<tls11@desk.example>"
    msg.set_content("A notice.")
    return msg


@pytest.fixture
def old_tls(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    return tls11_only(tmp_path)


def _lax_client(server_context: ssl.SSLContext) -> ssl.SSLContext:
    # aiosmtpd's start-up probe connects with TLS itself; let it speak TLS 1.1 (the desk's client is what is tested)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1_1
    return context


@pytest.fixture
def smtps_tls11(old_tls: tuple[Path, ssl.SSLContext], monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    monkeypatch.setattr(aiosmtpd.controller, "_server_to_client_ssl_ctx", _lax_client)
    with running_smtp(server_hostname="127.0.0.1", ssl_context=old_tls[1]) as server:
        yield server


@pytest.fixture
def starttls_tls11(old_tls: tuple[Path, ssl.SSLContext]) -> Iterator[SmtpServer]:
    with running_smtp(tls_context=old_tls[1], require_starttls=True) as server:
        yield server


@pytest.mark.parametrize("server_fixture, scheme", [("smtps_tls11", "smtps"), ("starttls_tls11", "smtp")])
def test_the_smtp_client_refuses_a_server_offering_only_tls_1_1(
    request: pytest.FixtureRequest, old_tls: tuple[Path, ssl.SSLContext], server_fixture: str, scheme: str
) -> None:
    server: SmtpServer = request.getfixturevalue(server_fixture)
    # Even a caller's context that would allow TLS 1.0 gets the floor
    lax = ssl.create_default_context(cafile=str(old_tls[0]))
    lax.set_ciphers("DEFAULT:@SECLEVEL=0")  # without the floor, this context would complete a TLS 1.1 handshake
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        lax.minimum_version = ssl.TLSVersion.TLSv1
    transport = SmtpTransport(parse_smtp_url(f"{scheme}://127.0.0.1:{server.port}"), ssl_context=lax)
    with pytest.raises(TemporaryFailure, match=OLD_TLS):
        transport.send(_message(), sender="privacy@desk.example", recipient="dpo@controller.example")
    assert server.received == []


def test_the_smtp_client_refuses_an_unverified_certificate_even_from_a_lax_context(tmp_path: Path) -> None:
    ca_file, cert_file, key_file = make_certificates(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    lax = ssl.create_default_context()  # the system CAs only, and verification switched off by the caller
    lax.check_hostname = False
    lax.verify_mode = ssl.CERT_NONE
    with running_smtp(server_hostname="127.0.0.1", ssl_context=context) as server:
        with pytest.raises(TemporaryFailure, match="certificate"):
            SmtpTransport(parse_smtp_url(f"smtps://127.0.0.1:{server.port}"), ssl_context=lax).send(
                _message(), sender="privacy@desk.example", recipient="dpo@controller.example"
            )
        assert server.received == []


def test_the_imap_client_refuses_a_server_offering_only_tls_1_1(old_tls: tuple[Path, ssl.SSLContext]) -> None:
    ca_file, context = old_tls
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    handshakes: list[str] = []

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                handshakes.append(str(tls.version()))
                tls.sendall(b"* OK IMAP4rev1 ready\r\n")
        except (ssl.SSLError, OSError) as exc:
            handshakes.append(type(exc).__name__)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        settings = ImapSettings.from_url(f"imaps://desk:pw@127.0.0.1:{port}/INBOX", ca_file=str(ca_file))
        with pytest.raises(ImapError, match=OLD_TLS):
            connect(settings)
    finally:
        thread.join(10)
        listener.close()
    assert handshakes and handshakes[0] != "TLSv1.1"  # no session was ever established
