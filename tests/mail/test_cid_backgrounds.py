"""Outlook's inline table backgrounds (`background="cid:…"`) show like inline images; a remote background never loads."""

from __future__ import annotations

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.tickets.html import sanitise_html
from app.tickets.models import Attachment, Message
from tests.conftest import AuthActions
from tests.mail.more_cases import _related
from tests.mail.test_cases import acme
from tests.mail.test_real_world import ingest

HTML = '<table background="cid:bg1@acme.example"><tr><td background="cid:bg1@acme.example">Hello</td></tr></table>'


def test_a_cid_background_is_rewritten_to_the_stored_part_and_shown_on_the_ticket_page(session: Session, client: FlaskClient, auth: AuthActions) -> None:
    # Given an HTML message whose table background is an inline part
    acme(session)
    outcome = ingest(session, _related(HTML, "Content-ID: <bg1@acme.example>"))
    message = session.get(Message, outcome.message_pk)
    [image] = session.scalars(select(Attachment).where(Attachment.content_type == "image/png"))
    url = f"/tickets/{outcome.ticket_id}/attachments/{image.id}"
    # Then the stored HTML points at the stored part, and the ticket page keeps it (same origin, under the CSP)
    assert message is not None and "cid:" not in (message.body_html or "").lower() and url in (message.body_html or "")
    auth.login("privacy_officer")
    page = client.get(f"/tickets/{outcome.ticket_id}").get_data(as_text=True)
    assert f'background="{url}"' in page


def test_a_remote_or_unresolved_background_is_dropped() -> None:
    shown = sanitise_html('<table background="https://tracker.example/p.gif"><tr><td background="cid:missing@x">Hi</td></tr></table>')
    assert "background" not in shown and "Hi" in shown
