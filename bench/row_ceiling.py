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


class RowCeiling:
    """The raw work for one message: stdlib parse, AES-GCM of body and requester, one INSERT per row the desk stored, one commit.

    `url` is a copy of the desk's database made before the run (written, timed).
    """

    def __init__(self, url: str) -> None:
        self.aead = AESGCM(AESGCM.generate_key(bit_length=256))
        self.conn = psycopg.connect(url)
        self.tables = _tables_in_foreign_key_order(self.conn)
        self.keys = _primary_keys(self.conn)
        self.present: dict[str, set[tuple[Any, ...]]] = {}
        for table in self.tables:
            key = self.keys[table]
            query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(map(sql.Identifier, key)), sql.Identifier(table))
            self.present[table] = {tuple(row) for row in self.conn.execute(query)}
        self.conn.commit()
        self.statements: dict[tuple[str, tuple[str, ...]], tuple[str, str, list[int], list[int]]] = {}
        self.rows = self.inserts = self.updates = 0

    def take(self, raw: bytes, written: Written) -> None:
        """One message, committed: the parse and encryption, then the rows the desk stored for it, one statement each."""
        aead, conn = self.aead, self.conn
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        part = msg.get_body(preferencelist=("plain", "html")) if not msg.is_multipart() or msg.get_content_maintype() == "multipart" else msg
        body = part.get_content() if part is not None else ""
        requester = str(msg.get("From", ""))
        aead.encrypt(os.urandom(12), requester.encode(), None)
        aead.encrypt(os.urandom(12), str(body).encode(errors="replace"), None)
        aead.encrypt(os.urandom(12), raw, None)
        for table, columns, rows in written:
            insert, update, at, rest = self._statements(table, columns)
            present = self.present[table]
            for row in rows:
                pk = tuple(row[i] for i in at)
                if pk in present:
                    conn.execute(update, [row[i] for i in rest] + list(pk))
                    self.updates += 1
                else:
                    conn.execute(insert, row)
                    present.add(pk)
                    self.inserts += 1
                self.rows += 1
        conn.commit()

    def _statements(self, table: str, columns: list[str]) -> tuple[str, str, list[int], list[int]]:
        """The INSERT and UPDATE of `table` with `columns`, built once (as any raw loop would), and where its key sits."""
        cached = self.statements.get((table, tuple(columns)))
        if cached is None:
            key = self.keys[table]
            rest = [i for i, c in enumerate(columns) if c not in key]
            insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)), sql.SQL(", ").join(sql.Placeholder() * len(columns))
            )
            update = sql.SQL("UPDATE {} SET {} WHERE {}").format(
                sql.Identifier(table),
                sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(columns[i])) for i in rest),
                sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in key),
            )
            at = [columns.index(k) for k in key]
            cached = self.statements[(table, tuple(columns))] = (insert.as_string(self.conn), update.as_string(self.conn), at, rest)
        return cached

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()
