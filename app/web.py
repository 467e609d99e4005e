"""Small helpers every blueprint uses: paging arguments and the acting principal."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Flask, Request, g, stream_with_context
from werkzeug.routing import IntegerConverter, Map

from app.blobs.store import iter_blob
from app.extensions import db
from app.principal import Principal

# Every id column is a 32-bit integer: a larger id in a URL is a 404 at routing,
# never a database error (Postgres refuses to compare an INTEGER with a bigger literal).
MAX_ID = 2**31 - 1

MAX_PAGE_SIZE = 200


def id_value(raw: str | None) -> int | None:
    """An id from a query or form value: a positive integer that fits the id columns, else None (never a database error)."""
    text = (raw or "").strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 10:  # str.isdigit also takes "²"; 10 digits cover MAX_ID
        return None
    value = int(text)
    return value if 1 <= value <= MAX_ID else None


def page_args(request: Request, default_size: int = 50) -> tuple[int, int]:
    """`page` and `size` from the query string, clamped to sane values (a page beyond the id range is the last one that could exist)."""
    page = id_value(request.args.get("page")) or 1
    size = request.args.get("size", default_size, type=int) or default_size
    size = min(max(size, 1), MAX_PAGE_SIZE)
    return min(page, MAX_ID // size), size


class IdConverter(IntegerConverter):
    """`<int:...>` in every route: a positive id that fits the id columns."""

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min", 1)
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def install_id_converter(app: Flask) -> None:
    """Make `<int:...>` the bounded id converter; call before any blueprint is registered."""
    app.url_map.converters["int"] = IdConverter


def current_principal() -> Principal:
    """The staff member of this request; the auth layer sets `g.principal`."""
    principal: Principal | None = g.get("principal")
    return principal or Principal.system("web-anonymous")


def streamed_blob(blob_id: int) -> Iterator[bytes]:
    """A response body streaming a stored blob (file, export) chunk by chunk, read in a session of its own.

    Flask tears the request down (closing the request's session) when the view returns, before
    the first byte goes out; a body that went on using that session would check out a
    connection that nothing gives back to the pool.
    """

    def chunks() -> Iterator[bytes]:
        with db.session_scope() as session:
            yield from iter_blob(session, blob_id)

    return stream_with_context(chunks())


# (endpoint, label) of the top navigation, in order; blueprints add themselves.
# Entries the current staff member may not open are hidden (app.auth.gate.may_visit).
NAV: list[tuple[str, str]] = [
    ("tickets.index", "Tickets"),
    ("dsr.dashboard", "Requests"),
    ("controllers.index", "Controllers"),
    ("quarantine.index", "Quarantine"),
    ("retention.index", "Retention"),
    ("admin.users", "Staff"),
    ("audit_log.index", "Audit log"),
]
