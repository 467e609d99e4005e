"""Ticket attachments: upload (as an internal note carrying the file) and download (inline only for safe types)."""

from __future__ import annotations

import re
from urllib.parse import quote

from werkzeug.wrappers import Response

from app.auth import rbac
from app.db import utcnow
from app.errors import back_to
from app.extensions import db
from app.tickets import service
from app.tickets.forms import AttachmentForm, submitted
from app.tickets.views.common import attachment_max_bytes, bp, scoped_ticket, ticket_page
from app.web import current_principal, streamed_blob


@bp.post("/<int:ticket_id>/attachments")
@rbac.require(rbac.TICKETS_WORK)
@back_to("tickets.show")
def upload(ticket_id: int) -> Response:
    ticket = scoped_ticket(ticket_id)
    form = submitted(AttachmentForm())
    upload = form.file.data
    now, by = utcnow(), current_principal()
    # The file arrives as an internal note that carries it; the note's text is the optional comment.
    data = service.MessageInput(direction="note", body_text=form.comment.data or "Attachment added.", author_id=rbac.current_staff().user_id)
    message = service.add_message(db.session, ticket, data, by=by, now=now)
    # Werkzeug spools a large upload to a temporary file; the service reads it a chunk at a time
    # (AttachmentTooLarge past the limit: the note and the file are rolled back together).
    service.add_attachment(
        db.session,
        message,
        filename=(upload.filename or "attachment")[:255],
        content_type=upload.mimetype or "application/octet-stream",
        content=upload.stream,
        by=by,
        now=now,
        max_bytes=attachment_max_bytes(),
    )
    db.session.commit()
    return ticket_page(ticket, "Attachment added.")


def content_disposition(kind: str, filename: str | None) -> str:
    """`inline`/`attachment` with an ASCII fallback name and the RFC 6266/5987 UTF-8 name (no header injection)."""
    name = (filename or "attachment").replace("\r", " ").replace("\n", " ")
    ascii_name = re.sub(r"[^A-Za-z0-9._ -]", "_", name)[:150] or "attachment"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name[:150], safe='')}"


@bp.get("/<int:ticket_id>/attachments/<int:attachment_id>")
@rbac.require(rbac.TICKETS_WORK)
def download(ticket_id: int, attachment_id: int) -> Response:
    attachment = service.get_attachment(db.session, scoped_ticket(ticket_id), attachment_id)
    base_type = attachment.content_type.split(";")[0].strip().lower()
    inline = service.inline_allowed(base_type)
    response = Response(streamed_blob(attachment.blob_id), content_type=base_type if inline else "application/octet-stream")
    response.headers["Content-Length"] = str(attachment.size)
    response.headers["Content-Disposition"] = content_disposition("inline" if inline else "attachment", attachment.filename)
    response.headers["X-Content-Type-Options"] = "nosniff"
    if base_type != "application/pdf":
        # A file from a stranger is never a page of the desk: no scripts, no same-origin access.
        response.headers["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; sandbox"
    return response
