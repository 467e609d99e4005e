"""The export handed to the controller (issue 13 item 4): an email per DSR contact, a link valid 7 days and once, audited downloads."""

from __future__ import annotations

import datetime as dt
import io
import re

from flask.testing import FlaskClient
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.db import utcnow
from app.dsr.models import DsrEvent
from app.mail.models import OutboxEmail
from app.subject_data import pdf_summary
from app.subject_data.models import ExportLink, SubjectRun
from tests.conftest import AuthActions
from tests.subject_data.support import drain, instruct, scene

LINK = re.compile(r"(https?://[^\s]+/subject-data/exports/link/[A-Za-z0-9_-]+)")
TOKEN = re.compile(r'name="token" value="([^"]+)"')


def _exported(client: FlaskClient, auth: AuthActions, session: Session):  # type: ignore[no-untyped-def]
    auth.login("privacy_officer")
    sc = scene(session)
    instruct(session, sc, "provide_data")
    assert client.post(f"/subject-data/dsr/{sc.dsr.id}/run", data={"kind": "export", "controller_id": sc.controller.id}).status_code == 303
    run = session.scalars(select(SubjectRun)).one()
    drain(session, run.id, now=utcnow())
    return sc, run


def test_the_controllers_contacts_get_a_link_that_downloads_once_and_is_audited(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    sc, run = _exported(client, auth, session)
    # The officer sends the export: one email per DSR contact, one link per file, no secret stored.
    assert client.post(f"/subject-data/runs/{run.id}/send").status_code == 303
    mail = session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "dsr_export")).one()
    assert mail.to_addr == "dpo@ctl-subject.example" and sc.dsr.reference in mail.subject
    urls = LINK.findall(mail.body_text)
    assert len(urls) == 2
    links = session.scalars(select(ExportLink)).all()
    assert len(links) == 2 and all(link.expires_at - link.created_at == dt.timedelta(days=7) for link in links)
    assert all(url.rsplit("/", 1)[1] not in {link.secret_sha256 for link in links} for url in urls)
    path = urls[1].split("://", 1)[1].split("/", 1)[1]
    auth.logout()
    # Opening the page (a mail scanner may) does not spend the link; its button does, and mints the stream token.
    page = client.get(f"/{path}")
    assert page.status_code == 200 and "no-store" in page.headers["Cache-Control"]
    token_page = client.post(f"/{path}")
    assert token_page.status_code == 200
    token = TOKEN.search(token_page.get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    download = client.post("/subject-data/exports/link-download", data={"token": token})
    assert download.status_code == 200 and download.get_data().startswith(b"%PDF")
    # Once: the link and the token are both spent.
    assert client.post(f"/{path}").status_code == 410
    assert client.post("/subject-data/exports/link-download", data={"token": token}).status_code == 410
    events = session.scalars(select(AuditEvent).where(AuditEvent.action == "subject_data.export_link_download")).all()
    assert len(events) == 1 and events[0].details["dsr_id"] == sc.dsr.id
    history = [e.code for e in session.scalars(select(DsrEvent).where(DsrEvent.dsr_id == sc.dsr.id))]
    assert "export_sent" in history and "export_downloaded" in history


def test_a_link_older_than_7_days_no_longer_works(client: FlaskClient, auth: AuthActions, session: Session) -> None:
    _sc, run = _exported(client, auth, session)
    client.post(f"/subject-data/runs/{run.id}/send")
    mail = session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "dsr_export")).one()
    for link in session.scalars(select(ExportLink)):
        link.expires_at = link.created_at - dt.timedelta(seconds=1)
    session.flush()
    path = LINK.findall(mail.body_text)[0].split("://", 1)[1].split("/", 1)[1]
    assert client.get(f"/{path}").status_code == 410


def test_the_pdf_wraps_at_word_boundaries() -> None:
    # "Receiv/ed" and "max.muster@post.ex/ample" were split mid-word (WrapMode.CHAR).
    summary = pdf_summary.Summary()
    summary.add_page()
    summary.set_font(pdf_summary.FONT, size=9)
    summary.text_block(5, " ".join(["Received", "on", "Monday", "from", "max.muster@post.example"] * 12))
    text = PdfReader(io.BytesIO(bytes(summary.output()))).pages[0].extract_text()
    words = text.split()
    assert len(text.splitlines()) > 2 and set(words) - {"Page", "1"} == {"Received", "on", "Monday", "from", "max.muster@post.example"}
