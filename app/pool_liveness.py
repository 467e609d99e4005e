"""Check a pooled Postgres connection at checkout only when it may have died: idle for a while, or hung up on.

SQLAlchemy's `pool_pre_ping` sends a `SELECT 1` round trip at every checkout of a pooled connection, so every
transaction of a busy process (the LMTP listener, a worker, the web) pays one more round trip than its statements
(issue 11 item 7: about one in eight of an ingested message's). The pattern here is HikariCP's "alive bypass window"
(a connection used within the last moments is not validated again) with one addition that costs no round trip: a
connection whose socket is readable while idle has been spoken to by the server, which only does that to end it
(pg_terminate_backend, a restart: an ErrorResponse, then EOF), and is pinged before use.

So a connection is pinged at checkout when it was checked in more than `PING_IDLE_SECONDS` ago or its socket is
readable; a ping that fails raises `DisconnectionError`, and the pool discards the connection and opens a new one
(SQLAlchemy, "Disconnect Handling - Pessimistic"). A connection just opened is not pinged (as with pre_ping). What
is no longer caught before use: a connection that died silently (no FIN reached us) within the window; its first
statement fails as a dropped connection, which the callers already treat as a temporary fault (ingest exits 75).
"""

from __future__ import annotations

import select
import time
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError

PING_IDLE_SECONDS = 1.0
_IDLE_SINCE = "idle_since"


def ping_when_in_doubt(engine: Engine, *, idle_seconds: float = PING_IDLE_SECONDS) -> None:
    """Install the checkout check on `engine` (a Postgres engine created without pool_pre_ping)."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop(_IDLE_SINCE, None)
        if since is None:
            return  # just opened: nothing to doubt
        if time.monotonic() - since <= idle_seconds and not _spoken_to(dbapi_connection):
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # any failure of the ping means the connection is unusable
            raise DisconnectionError("the pooled connection failed its ping") from exc
        if not alive:
            raise DisconnectionError("the pooled connection failed its ping")


def _spoken_to(dbapi_connection: Any) -> bool:
    """True when the idle connection's socket has something to read (the server ended it) or is gone."""
    try:
        fd = dbapi_connection.fileno()
        readable, _, _ = select.select([fd], [], [], 0)
    except (OSError, ValueError, AttributeError):
        return True  # no usable socket: let the ping decide
    return bool(readable)
