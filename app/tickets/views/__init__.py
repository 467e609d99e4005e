"""Staff ticket pages (the `tickets` blueprint), one module per concern:

- `queue`: the queues (per controller, triage) and search;
- `thread`: one ticket with its thread, and what staff do on it (reply, note, status, assign, move);
- `files`: attachments, uploaded and downloaded.

Scope: agents see only the tickets of the controllers assigned to them; any other ticket (or the triage queue)
is a 404, exactly like an id that does not exist (the service's `TicketNotFound`, mapped by `app.errors`).
Every change goes through `app.tickets.service` (which writes the audit event) and is committed in the view;
nothing changes on GET.
"""

from __future__ import annotations

from app.tickets.views import files, queue, thread
from app.tickets.views.common import attachment_max_bytes, bp
from app.tickets.views.queue import decode_cursor, encode_cursor

__all__ = ["attachment_max_bytes", "bp", "decode_cursor", "encode_cursor", "files", "queue", "thread"]
