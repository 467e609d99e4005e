"""Helpers for the inbound mail tests: the corpus folder and a message builder."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

CORPUS = Path(__file__).parent / "corpus"


def corpus(name: str) -> bytes:
    """The bytes of one corpus file."""
    return (CORPUS / name).read_bytes()


def build(
    *,
    sender: str = "Jane Roe <jane.roe@example.org>",
    to: str = "privacy@desk.localhost",
    subject: str = "Question",
    body: str = "Hello, I have a question.",
    message_id: str | None = "<m1@example.org>",
    headers: dict[str, str] | None = None,
) -> bytes:
    """A well-formed message with the given parts."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    if message_id:
        msg["Message-ID"] = message_id
    for key, value in (headers or {}).items():
        msg[key] = value
    msg.set_content(body)
    return msg.as_bytes()
