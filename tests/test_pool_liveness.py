"""A pooled Postgres connection is pinged at checkout only when in doubt (app.pool_liveness; issue 11 item 7).

pool_pre_ping's SELECT 1 cost every transaction of a long-lived process a round trip. Now: no ping for a
connection checked in moments ago; a ping for one idle longer, or whose server ended it (pg_terminate_backend);
a failed ping gives a new connection, never an error to the caller.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine.interfaces import DBAPIConnection

from app.db import make_engine
from app.pool_liveness import PING_IDLE_SECONDS
from tests.databases import ON_POSTGRES, fresh_database

pytestmark = pytest.mark.skipif(not ON_POSTGRES, reason="the check is for Postgres connections (SQLite has no server to lose)")


@dataclass
class Counted:
    engine: Engine
    pings: list[int]


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Counted]:
    """The desk's engine (app.db.make_engine) on a fresh Postgres database, with its pings counted."""
    with fresh_database(tmp_path, "liveness") as url:
        eng = make_engine(url, pool_size=1, max_overflow=0)
        pings: list[int] = []
        ping = eng.dialect.do_ping

        def counted(dbapi_connection: DBAPIConnection) -> bool:
            pings.append(1)
            return ping(dbapi_connection)

        eng.dialect.do_ping = counted  # type: ignore[method-assign]  # observe the real ping, unchanged
        try:
            yield Counted(eng, pings)
        finally:
            eng.dispose()


def _pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_connection_used_moments_ago_is_not_pinged(desk: Counted) -> None:
    first = _pid(desk.engine)  # a new connection: not pinged either
    for _ in range(20):
        assert _pid(desk.engine) == first
    assert desk.pings == []


def test_a_connection_idle_longer_than_the_window_is_pinged_once(desk: Counted) -> None:
    first = _pid(desk.engine)
    time.sleep(PING_IDLE_SECONDS + 0.2)
    assert _pid(desk.engine) == first  # alive: the same connection
    assert len(desk.pings) == 1
    assert _pid(desk.engine) == first and len(desk.pings) == 1  # used again at once: no second ping


def test_a_connection_the_server_ended_is_replaced_at_once_without_an_error(desk: Counted) -> None:
    first = _pid(desk.engine)
    url = desk.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (first,))  # waits until the session is gone
    # Within the window: the socket shows the server hung up, so the ping runs, fails, and the pool reconnects
    second = _pid(desk.engine)
    assert second != first
    assert len(desk.pings) == 1
