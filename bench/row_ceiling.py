"""Issue 11's raw ceiling, as the issue words it: parse with the standard library, AES-GCM of the body and the requester,
one INSERT per row, one commit per message.

"Per row" is per row the desk stores for that message. Before the timed run, the corpus goes through the desk once on a
copy of the desk's database, in a process of its own (`capture`, untimed): after each message, the rows its
transaction(s) wrote are read back (`xmin` newer than a transaction id taken just before). Reading them between the
desk's timed messages instead cost the desk about 15 % of its measured rate (forty table scans a message, in the same
process and the same server, between two of its messages). In the timed run, the ceiling's database is another copy
(`CREATE DATABASE … TEMPLATE`) of the desk's as the bench registered its controllers: the same tables, indexes,
foreign keys and triggers, the same reference rows. For each message, right after the desk took it, the ceiling does
its own work on it, timed: the stdlib parse, AES-GCM of the requester, the body and the raw message, and one plain
parameterised INSERT per row the desk stored for it (an UPDATE for a row that existed before, such as a ticket a
reply reopened), parents before children, and one commit. No application code, no ORM, no multi-row statement:
psycopg 3 and the server.

What it does not do: the desk's reads (the duplicate lookup, threading, routing), its locks, and its choice of which
rows to write. That is the desk's logic, which the ratio measures.

Imported by bench/ingest.py.
"""

from __future__ import annotations

import email
import email.policy
import os
from collections import defaultdict
from typing import Any

import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg import sql
from psycopg.types.json import Jsonb

XID_SPACE = 2**32  # xmin is a 32-bit transaction id; txid_current() adds the epoch


def _tables_in_foreign_key_order(conn: psycopg.Connection[Any]) -> list[str]:
    """The public tables (but Alembic's), each after every table it references (raises on a cycle)."""
    tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version' ORDER BY 1")]
    parents: dict[str, set[str]] = {t: set() for t in tables}
    for child, parent in conn.execute(
        "SELECT c.relname, p.relname FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid "
        "WHERE k.contype = 'f' AND k.conrelid <> k.confrelid"
    ):
        if child in parents and parent in parents:
            parents[child].add(parent)
    ordered: list[str] = []
    while parents:
        ready = sorted(t for t, ps in parents.items() if not ps - set(ordered))
        if not ready:
            raise RuntimeError(f"foreign keys form a cycle among {sorted(parents)}")
        ordered += ready
        for t in ready:
            del parents[t]
    return ordered


def _primary_keys(conn: psycopg.Connection[Any]) -> dict[str, list[str]]:
    """Each public table's primary-key columns, in key order."""
    keys: dict[str, list[str]] = defaultdict(list)
    for table, column in conn.execute(
        "SELECT c.relname, a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
        "JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum "
        "WHERE i.indisprimary AND c.relnamespace = 'public'::regnamespace ORDER BY c.relname, k.n"
    ):
        keys[table].append(column)
    return keys


Written = list[tuple[str, list[str], list[tuple[Any, ...]]]]  # (table, columns, rows) a message wrote, parents first


class RowCapture:
    """What the desk writes for each message, read back from its database `url` (untimed): `mark`, the message, `written`."""

    def __init__(self, url: str) -> None:
        self.source = psycopg.connect(url, autocommit=True)
        self.tables = _tables_in_foreign_key_order(self.source)
        self.since = 0

    def mark(self) -> None:
        """Before the desk takes a message: what it writes from now on is newer than this transaction."""
        row = self.source.execute("SELECT txid_current()").fetchone()
        assert row is not None
        self.since = int(row[0]) % XID_SPACE

    def written(self) -> Written:
        """After the desk committed: (table, columns, rows) of every row its transactions wrote since `mark`, parents first."""
        out = []
        for table in self.tables:
            query = sql.SQL("SELECT * FROM {} WHERE xmin::text::bigint > %s ORDER BY 1").format(sql.Identifier(table))
            cur = self.source.execute(query, (self.since,))
            rows = cur.fetchall()
            if rows:
                assert cur.description is not None
                out.append((table, [d.name for d in cur.description], rows))
        return out

    def close(self) -> None:
        """Close the connection."""
        self.source.close()


def as_parameters(written: Written) -> Written:
    """The captured rows with their JSON values wrapped for psycopg (before the timed run)."""
    return [(table, columns, [tuple(Jsonb(v) if isinstance(v, dict | list) else v for v in row) for row in rows]) for table, columns, rows in written]


Plan = list[tuple[str, tuple[Any, ...]]]  # one message's statements (SQL text, parameters), in order


class RowCeiling:
    """The raw work for one message: stdlib parse, AES-GCM of body and requester, one INSERT per row the desk stored, one commit.

    `url` is a copy of the desk's database made before the run (written, timed); `pipelined`: a variant the issue does not
    describe, for the record: the message's statements and commit sent in psycopg's pipeline mode, without waiting for
    each one's result (one round trip a message instead of one a row). `plan` (untimed, before the run)
    turns the captured rows into each message's statements: an INSERT per new row; for a row that existed (written
    by an earlier message, or in the copy from the start), an UPDATE of the columns that changed (of the first
    non-key column when none did: the desk wrote it). `take` runs one message's plan after its parse and encryption.
    """

    def __init__(self, url: str, *, pipelined: bool = False) -> None:
        self.aead = AESGCM(AESGCM.generate_key(bit_length=256))
        self.conn = psycopg.connect(url)
        self.tables = _tables_in_foreign_key_order(self.conn)
        self.keys = _primary_keys(self.conn)
        self.pipelined = pipelined  # the statements and the commit sent in psycopg's pipeline mode (not the issue's)
        self.rows = self.inserts = self.updates = 0

    def plan(self, written_of: list[Written]) -> list[Plan]:
        """Each message's statements, in the corpus's order (untimed): the rows as they were before each is known."""
        current: dict[str, dict[tuple[Any, ...], tuple[Any, ...]]] = {}
        columns_of: dict[str, list[str]] = {}
        for table in self.tables:
            cur = self.conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
            assert cur.description is not None
            columns_of[table] = [d.name for d in cur.description]
            at = [columns_of[table].index(k) for k in self.keys[table]]
            current[table] = {tuple(row[i] for i in at): tuple(row) for row in as_parameters([(table, columns_of[table], cur.fetchall())])[0][2]}
        self.conn.commit()
        texts: dict[tuple[str, str, tuple[str, ...]], str] = {}
        plans = []
        for written in written_of:
            plan: Plan = []
            for table, columns, rows in written:
                key = self.keys[table]
                at = [columns.index(k) for k in key]
                for row in rows:
                    pk = tuple(row[i] for i in at)
                    before = current[table].get(pk)
                    if before is None:
                        text = texts.get(("insert", table, tuple(columns)))
                        if text is None:
                            text = texts[("insert", table, tuple(columns))] = self._insert(table, columns)
                        plan.append((text, row))
                        self.inserts += 1
                    else:
                        changed = [i for i, c in enumerate(columns) if c not in key and _differs(before[i], row[i])]
                        changed = changed or [next(i for i, c in enumerate(columns) if c not in key)]
                        names = tuple(columns[i] for i in changed)
                        text = texts.get(("update", table, names))
                        if text is None:
                            text = texts[("update", table, names)] = self._update(table, names, key)
                        plan.append((text, tuple(row[i] for i in changed) + pk))
                        self.updates += 1
                    current[table][pk] = row
                    self.rows += 1
            plans.append(plan)
        return plans

    def take(self, raw: bytes, plan: Plan) -> None:
        """One message, committed: the parse and encryption, then its statements, one a row."""
        aead, conn = self.aead, self.conn
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        part = msg.get_body(preferencelist=("plain", "html")) if not msg.is_multipart() or msg.get_content_maintype() == "multipart" else msg
        body = part.get_content() if part is not None else ""
        requester = str(msg.get("From", ""))
        aead.encrypt(os.urandom(12), requester.encode(), None)
        aead.encrypt(os.urandom(12), str(body).encode(errors="replace"), None)
        aead.encrypt(os.urandom(12), raw, None)
        if self.pipelined:
            with conn.pipeline():
                for text, params in plan:
                    conn.execute(text, params)
                conn.commit()
        else:
            for text, params in plan:
                conn.execute(text, params)
            conn.commit()

    def _insert(self, table: str, columns: list[str]) -> str:
        statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)), sql.SQL(", ").join(sql.Placeholder() * len(columns))
        )
        return statement.as_string(self.conn)

    def _update(self, table: str, names: tuple[str, ...], key: list[str]) -> str:
        statement = sql.SQL("UPDATE {} SET {} WHERE {}").format(
            sql.Identifier(table),
            sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in names),
            sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in key),
        )
        return statement.as_string(self.conn)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def _differs(before: Any, after: Any) -> bool:
    if isinstance(before, Jsonb) and isinstance(after, Jsonb):
        return bool(before.obj != after.obj)
    return bool(before != after)
