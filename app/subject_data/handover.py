"""The export handed to the controller: an email to each DSR contact with a link, a download page, one download per link.

`send_links` writes one link per export file and contact (valid 7 days; the
file is kept at least as long), and one email per contact through the
outbox (so it is gated, retried and recorded like every email). Only the
SHA-256 of a link's secret is stored. Opening a link shows a page; its button
spends the link (`spend`: one conditional UPDATE, so two clicks give one
download) and mints the single-use 60-second HS256 stream token
(`app.subject_data.tokens`, W§9.1(e)) that the page's second button posts to
`download`. Every download is audit-logged and a line in the request's history.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.audit.service import record
from app.controllers.models import ControllerContact
from app.dsr.history import add_event
from app.dsr.settings import DsrSettings
from app.exceptions import NotFound, Refused
from app.mail.outbox import enqueue_email
from app.principal import Principal
from app.subject_data import tokens
from app.subject_data.authority import request
from app.subject_data.errors import InvalidRequest
from app.subject_data.models import ExportLink, SubjectExport, SubjectRun

VALID_FOR = dt.timedelta(days=7)
LINK_USER = 0  # the stream token's subject for a controller's contact (not a staff user)
KIND = "dsr_export"


class LinkNotFound(NotFound):
    """No link with that secret (or its file is gone)."""


class LinkNotUsable(Refused):
    """The link was used already or has expired."""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def send_links(session: Session, run_id: int, *, link_for: Callable[[str], str], settings: DsrSettings, by: Principal, now: dt.datetime) -> int:
    """Email each DSR contact of the run's controller a link per export file; how many emails (flush only).

    `link_for(secret)` is the page's absolute URL (the web edge knows the host). InvalidRequest when the run has no files.
    """
    run = session.get(SubjectRun, run_id)
    if run is None or run.kind != "export" or run.state != "done":
        raise InvalidRequest("only a finished export can be sent")
    files = list(session.scalars(select(SubjectExport).where(SubjectExport.run_id == run.id, SubjectExport.deleted_at.is_(None)).order_by(SubjectExport.id)))
    if not files:
        raise InvalidRequest("the export's files are gone: export again")
    dsr = request(session, run.dsr_id)
    contacts = list(session.scalars(select(ControllerContact).where(ControllerContact.controller_id == run.controller_id, ControllerContact.kind == "dsr")))
    if not contacts:
        raise InvalidRequest("the controller has no DSR contact to send the export to")
    for item in files:
        item.expires_at = max(item.expires_at, now + VALID_FOR)  # the file is kept as long as its links work
    for contact in contacts:
        lines = []
        links = []
        for item in files:
            secret = secrets.token_urlsafe(32)
            link = ExportLink(
                export_id=item.id,
                dsr_id=dsr.id,
                controller_id=run.controller_id,
                contact_id=contact.id,
                secret_sha256=_hash(secret),
                created_at=now,
                expires_at=now + VALID_FOR,
            )
            session.add(link)
            links.append(link)
            lines.append(f"- {item.format.upper()} ({item.size} bytes, SHA-256 {item.sha256}): {link_for(secret)}")
        row = enqueue_email(
            session,
            to=contact.email or "",
            subject=f"Data export for data subject request {dsr.reference}",
            body_text=(
                f"The data export you instructed for data subject request {dsr.reference} is ready.\n\n"
                + "\n".join(lines)
                + f"\n\nEach link works once, for you, until {links[0].expires_at:%Y-%m-%d %H:%M} UTC. "
                "Do not forward this email: the links are the files.\n"
            ),
            reply_to=settings.reply_to,
            controller_id=run.controller_id,
            related_type="dsr",
            related_id=dsr.id,
            kind=KIND,
            msgid_domain=settings.msgid_domain,
            by=by,
            now=now,
        )
        for link in links:
            link.outbox_id = row.id
    session.flush()
    add_event(session, dsr, "export_sent", by=by, now=now, run_id=run.id, controller_id=run.controller_id, contacts=len(contacts), files=len(files))
    return len(contacts)


def open_link(session: Session, secret: str, *, now: dt.datetime) -> tuple[ExportLink, SubjectExport]:
    """The link and its file, still usable; LinkNotFound or LinkNotUsable otherwise (nothing changes)."""
    link = session.scalar(select(ExportLink).where(ExportLink.secret_sha256 == _hash(secret or "")))
    item = session.get(SubjectExport, link.export_id) if link is not None else None
    if link is None or item is None or item.blob_id is None or item.deleted_at is not None:
        raise LinkNotFound("this download link is not known")
    if link.used_at is not None or link.expires_at <= now:
        raise LinkNotUsable("this download link has already been used or has expired")
    return link, item


def spend(session: Session, secret: str, key: bytes, *, now: dt.datetime) -> tuple[ExportLink, SubjectExport, str]:
    """Use the link once (one conditional UPDATE) and mint the single-use 60-second stream token for its file."""
    link, item = open_link(session, secret, now=now)
    spent = session.execute(
        update(ExportLink)
        .where(ExportLink.id == link.id, ExportLink.used_at.is_(None), ExportLink.expires_at > now)
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(spent, "rowcount", 0) != 1:
        raise LinkNotUsable("this download link has already been used or has expired")
    token = tokens.issue(session, key, resource=f"export:{item.id}:link:{link.id}", user_id=LINK_USER, now=now)
    return link, item, token


def download(session: Session, token: str, key: bytes, *, by: Principal, now: dt.datetime) -> SubjectExport:
    """Redeem a link's stream token (verified, consumed once) and record the download: audit event and request history."""
    claims = tokens.verify(token, key)
    parts = claims.resource.split(":")
    if len(parts) != 4 or parts[0] != "export" or parts[2] != "link" or not (parts[1].isdigit() and parts[3].isdigit()):
        raise tokens.InvalidToken("the download link is not valid")
    tokens.consume(session, claims, user_id=LINK_USER, resource=claims.resource, now=now)
    item = session.get(SubjectExport, int(parts[1]))
    link = session.get(ExportLink, int(parts[3]))
    if item is None or item.blob_id is None or link is None or link.export_id != item.id:
        raise LinkNotFound("this download link is not known")
    details = {"dsr_id": item.dsr_id, "format": item.format, "link_id": link.id, "contact_id": link.contact_id}
    record(
        session,
        by=by,
        action="subject_data.export_link_download",
        target_type="subject_data_export",
        target_id=item.id,
        controller_id=item.controller_id,
        details=details,
        now=now,
    )
    dsr = request(session, item.dsr_id)
    add_event(session, dsr, "export_downloaded", by=by, now=now, export_id=item.id, link_id=link.id, contact_id=link.contact_id, format=item.format)
    return item


def links_of(session: Session, dsr_id: int) -> list[ExportLink]:
    """The request's export links, newest first (the DSR page shows who downloaded what, when)."""
    return list(session.scalars(select(ExportLink).where(ExportLink.dsr_id == dsr_id).order_by(ExportLink.id.desc())))
