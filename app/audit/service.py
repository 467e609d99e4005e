"""Append audit events to the chain and query them for the auditor. Services flush; the caller commits.

`record` writes the event in the caller's transaction, so a rolled-back change
leaves no event. Appends are serialised: on Postgres by a transaction-scoped
advisory lock taken before reading the chain head (held until commit or
rollback); on SQLite every write transaction already starts with BEGIN IMMEDIATE.
The unique `seq` is the last line of defence if something bypasses the lock.

The lock is held until the caller's transaction ends, so callers record as the
last step before they commit and keep such transactions short: every other
auditing writer waits for them. Because it is held, the head this transaction
wrote stays the head: it is kept on the connection (`_HEAD`) and the next event
of the same transaction is appended with one INSERT, no lock or head query.
It is forgotten when the transaction ends and when a savepoint is rolled back
(that takes its events, and an advisory lock taken inside it, along).

`appended_at_end(session)` (opt-in) queues a block's events and appends them at its
end with one lock, head read and INSERT: a block that ends as its transaction commits
(one inbound message) holds the lock from there only, and takes it after every other lock.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event, select
from sqlalchemy.orm import Session

from app.audit import append, pending
from app.audit import checkpoint as cp
from app.audit.chain import GENESIS, Link, canonical_json, event_hash, personal_digest
from app.audit.checkpoint import KeyFor
from app.audit.models import AuditEvent
from app.audit.personal import InvalidPersonalPart, check_personal, seal
from app.audit.search import EventFilter as EventFilter  # the auditor's query, re-exported
from app.audit.search import EventPage as EventPage
from app.audit.search import EventView as EventView
from app.audit.search import list_actions as list_actions
from app.audit.search import search_events as search_events
from app.compiled_once import last_rows
from app.exceptions import DeskError
from app.principal import Principal

# Any constant identifies the lock; it only has to be the same in every writer.
CHAIN_LOCK_KEY = 0x6175646974  # "audit"

_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_JOB = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/ -]{0,63}$")
MAX_LIST = 1000
MAX_DEPTH = 1  # one nested level, e.g. {"contacts": {"dsr": 2}}
_LINK_COLUMNS = ("seq", "actor_kind", "actor_id", "actor_name", "action", "target_type", "target_id", "controller_id", "prev_hash")


class AuditError(DeskError):
    """Base of the audit service's errors."""


class InvalidAuditEvent(AuditError, ValueError):
    """An event or its details would carry something other than ids, counts, short codes and booleans."""


def _is_code(value: str) -> bool:
    # A short code is an identifier-like token: no spaces, no '@', at most 64 characters.
    return bool(_CODE.match(value)) and "@" not in value


def _check_value(path: str, value: Any, depth: int) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        if not _is_code(value):
            raise InvalidAuditEvent(f"audit detail {path} is not a short code (letters, digits, _ . : / -; at most 64; no '@')")
        return value
    if isinstance(value, Mapping):
        if depth >= MAX_DEPTH:
            raise InvalidAuditEvent(f"audit detail {path} nests too deep")
        return _check_details(value, depth + 1, prefix=f"{path}.")
    if isinstance(value, list | tuple):
        if len(value) > MAX_LIST:
            raise InvalidAuditEvent(f"audit detail {path} lists more than {MAX_LIST} items")
        return [_check_value(f"{path}[{i}]", item, depth + 1) for i, item in enumerate(value)]
    # Floats, bytes, dates and objects are refused: counts are ints, and anything richer
    # could carry personal data or serialise differently on another database.
    raise InvalidAuditEvent(f"audit detail {path} has type {type(value).__name__}; only ids, counts, short codes and booleans")


def _check_details(details: Mapping[str, Any], depth: int = 0, prefix: str = "") -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in details.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise InvalidAuditEvent(f"audit detail key {prefix}{key!r} is not a lower-case code")
        clean[key] = _check_value(f"{prefix}{key}", value, depth)
    return clean


def check_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """The details as they will be stored, or InvalidAuditEvent if they carry anything but ids, counts, codes, booleans."""
    return _check_details(details or {})


def _code(name: str, value: str) -> str:
    if not isinstance(value, str) or not _is_code(value):
        raise InvalidAuditEvent(f"audit {name} must be a short code")
    return value


def _actor(by: Principal) -> tuple[str, int | None, str | None]:
    # A controller principal may carry the sender's email in `name`: that is personal data,
    # so only the kind and the controller id are kept here (the address goes in the event's
    # encrypted personal part, see record). Staff are kept by id, jobs by name.
    if by.kind == "staff":
        if by.id is None:
            raise InvalidAuditEvent("a staff principal needs its id")
        return "staff", by.id, None
    if by.kind == "controller":
        return "controller", by.id, None
    if by.kind == "system":
        name = by.name or "system"
        if not _JOB.match(name) or "@" in name:
            raise InvalidAuditEvent("a system principal's name must be a job name")
        return "system", by.id, name
    raise InvalidAuditEvent(f"unknown principal kind {by.kind!r}")


# The chain lock and the head in one round trip (Postgres): two statements in one simple-protocol query. Under READ
# COMMITTED each takes its own snapshot, the head's after the lock is held, so it sees every event committed before;
# a head read in the lock's own statement would not (its snapshot predates the wait for the lock).
_LOCK_THEN_HEAD = f"SELECT pg_advisory_xact_lock({CHAIN_LOCK_KEY}); SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1"


@functools.cache
def _head_query() -> Any:
    # Built once: building a statement cost more CPU than sending it.
    return select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)


def chain_head(session: Session) -> tuple[int, str]:
    """The last (seq, hash) of the chain, or (0, GENESIS) when it is empty (events queued by `appended_at_end` appended first)."""
    _append_pending(session)
    row = session.execute(_head_query()).first()
    return (row[0], row[1]) if row is not None else (0, GENESIS)


# (the connection's transaction, seq, hash) of the last event appended in that transaction under the chain lock.
# Kept on the connection, not the session: sessions that join one transaction (a test's, or any code joining an
# external transaction) share it, so an event one of them appends is seen by the others.
_HEAD = "dsr_desk_audit_head"


def _locked_head(session: Session) -> tuple[int, str]:
    """The head to append to (the session flushed): read under the chain lock on a transaction's first append, then kept."""
    conn = session.connection()
    held = conn.info.get(_HEAD)
    if held is not None and held[0] is conn.get_transaction():
        return held[1], held[2]
    if conn.dialect.name != "postgresql":
        return chain_head(session)  # SQLite: the write transaction began with BEGIN IMMEDIATE, no lock to take
    rows = last_rows(conn, _LOCK_THEN_HEAD)  # the second statement's: the head
    return (rows[0][0], rows[0][1]) if rows else (0, GENESIS)


def _keep_head(conn: Connection, seq: int, hash_: str) -> None:
    conn.info[_HEAD] = (conn.get_transaction(), seq, hash_)


@event.listens_for(Engine, "commit")
@event.listens_for(Engine, "rollback")
@event.listens_for(Engine, "rollback_savepoint")
def _forget_head(conn: Connection, *_args: Any) -> None:
    # After the transaction the head is whatever other writers made it; a savepoint rolled back takes
    # its events (and, on Postgres, a lock taken inside it) along: read it again under the lock. An invalidated
    # connection (its server session lost) has no info to read: its head went with the DBAPI connection.
    if conn.invalidated or conn.closed:
        return
    conn.info.pop(_HEAD, None)


@dataclass(frozen=True)
class Entry:
    """One event for `record_all`: what `record` takes besides the session, the principal and the time."""

    action: str
    target_type: str
    target_id: int | str | None = None
    controller_id: int | None = None
    details: Mapping[str, Any] | None = None
    personal: Mapping[str, Any] | None = None


def record(
    session: Session,
    *,
    by: Principal,
    action: str,
    target_type: str,
    target_id: int | str | None = None,
    controller_id: int | None = None,
    details: Mapping[str, Any] | None = None,
    personal: Mapping[str, Any] | None = None,
    now: dt.datetime,
) -> AuditEvent:
    """Append one event to the chain in the caller's transaction (flush only).

    Raises InvalidAuditEvent if action, target or details are anything but ids,
    counts, short codes and booleans: personal data never enters them in clear.
    `personal`: what the event must say about a person (a flat object of text, ints,
    booleans; at most 4096 bytes), encrypted under the key of the event's month and
    shredded with it by retention (app.audit.personal); a controller principal's
    address is added to it as `actor_address`.
    """
    return record_all(session, [Entry(action, target_type, target_id, controller_id, details, personal)], by=by, now=now)[0]


def _link(entry: Entry, by: Principal, at: dt.datetime) -> tuple[Link, dict[str, Any]]:
    """The event's hashed fields (seq and prev_hash still 0 and GENESIS) and its personal part, checked."""
    clean = check_details(entry.details)
    actor_kind, actor_id, actor_name = _actor(by)
    part = dict(entry.personal or {})
    if by.kind == "controller" and by.name:
        part.setdefault("actor_address", by.name)
    try:
        part = check_personal(part) if part else part  # an empty part is valid: nothing to check
    except InvalidPersonalPart as exc:
        raise InvalidAuditEvent(str(exc)) from None
    if isinstance(entry.target_id, bool):
        raise InvalidAuditEvent("audit target id must be an id or a short code")
    target = str(entry.target_id) if isinstance(entry.target_id, int) else None if entry.target_id is None else _code("target id", entry.target_id)
    action, target_type = _code("action", entry.action), _code("target type", entry.target_type)
    link = Link(0, at, actor_kind, actor_id, actor_name, action, target_type, target, entry.controller_id, clean, GENESIS)
    return link, part


def record_all(session: Session, entries: Sequence[Entry], *, by: Principal, now: dt.datetime) -> list[AuditEvent]:
    """Append events to the chain in this order, in the caller's transaction, with one INSERT (flush only).

    Each is checked as `record` checks one, all before anything is written; the caller's pending changes are flushed
    first (as `record` always did); the events go in by one INSERT, not a flush (app.audit.append), and come back in
    the session, loaded. Inside `appended_at_end` they are queued instead (returned unwritten)."""
    if now.tzinfo is None:
        raise InvalidAuditEvent("audit time must be timezone-aware UTC")
    at = now.astimezone(dt.UTC)
    prepared = [_link(entry, by, at) for entry in entries]
    if not prepared:
        return []
    session.flush()
    queue = pending.current(session)
    if queue is not None and queue.open:
        if session.in_nested_transaction():
            raise AuditError("an audit event recorded in a savepoint inside appended_at_end (its rollback could not take the queue along)")
        events = [append.unwritten(_columns(link)) for link, _ in prepared]
        queue.links.extend(prepared)
        queue.events.extend(events)
        return events
    _append_pending(session)  # left by a block that raised in this transaction: they come first
    return _append(session, prepared)


def _columns(link: Link) -> dict[str, Any]:
    row = {name: getattr(link, name) for name in _LINK_COLUMNS}
    return {**row, "occurred_at": link.at, "details_json": canonical_json(link.details)}


def _append(session: Session, prepared: Sequence[tuple[Link, dict[str, Any]]], events: Sequence[AuditEvent] | None = None) -> list[AuditEvent]:
    """Link the events after the head (kept, or read under the chain lock) and INSERT them; `events` to fill, if handed out."""
    seq, prev = _locked_head(session)
    rows: list[dict[str, Any]] = []
    for link, part in prepared:
        seq += 1
        personal_ct = seal(session, part, seq=seq, at=link.at) if part else None
        link = replace(link, seq=seq, prev_hash=prev, personal=personal_digest(personal_ct))
        prev = event_hash(link)
        rows.append({**_columns(link), "hash": prev, "personal_ct": personal_ct})
    conn = session.connection()
    ids = append.insert_rows(conn, rows)
    _keep_head(conn, seq, prev)
    return append.loaded_events(session, rows, ids, events)


# --- appending a block's events at its end (opt-in) -----------------------------------


def _append_pending(session: Session) -> None:
    taken = pending.take(session)
    if taken is not None:
        _append(session, *taken)


@contextmanager
def appended_at_end(session: Session) -> Iterator[None]:
    """Queue the events recorded in the block and append them at its end in call order, with one chain lock and head
    read and one INSERT: for a block that ends as its transaction commits, the lock is then held from there only.

    The events `record`/`record_all` hand back in the block are unwritten (no id, seq or hashes) until it ends.
    In the block: an event recorded in a savepoint raises AuditError (its rollback could not take queued events
    along); `chain_head` appends the queue first; other reads of audit_events do not see queued events. A commit in
    the block appends the queue first (before_commit); a rollback drops it with the transaction; if the block
    raises, its queue is left to its transaction the same way. Inside a block already collecting, it joins that.
    """
    if session.in_nested_transaction():
        raise AuditError("appended_at_end cannot start inside a savepoint")
    if pending.collecting(session):
        yield
        return
    _append_pending(session)
    queue = pending.start(session)
    try:
        yield
    finally:
        queue.open = False
    if session.in_nested_transaction():
        raise AuditError("appended_at_end ended inside a savepoint it did not start in")
    _append_pending(session)
    pending.end(session, queue)


@event.listens_for(Session, "before_commit")
def _append_before_commit(session: Session) -> None:
    if pending.queued(session) and not session.in_nested_transaction():
        _append_pending(session)


# --- signed checkpoints (issue 3 item 11) -----------------------------------------------


def take_checkpoint(session: Session, path: Path, *, key_version: int, key_for: KeyFor, now: dt.datetime) -> tuple[cp.Checkpoint, bool]:
    """Sign the committed chain head and append it to `path`; (checkpoint, False) when the head is already the last line.

    Reads only: the head is what other transactions committed, so the caller
    should not hold uncommitted events in this session.
    """
    seq, head = chain_head(session)
    last = cp.last_checkpoint(path)
    if last is not None and (last.seq, last.hash, last.key_version) == (seq, head, key_version):
        return last, False
    checkpoint = cp.sign(seq, head, key_version=key_version, key_for=key_for, now=now)
    cp.append(path, checkpoint)
    return checkpoint, True


def sign_checkpoint(session: Session, config: Mapping[str, Any], keys: cp.KeySource, *, now: dt.datetime) -> tuple[cp.Checkpoint, bool]:
    """Sign the committed chain head under the keyring's current master version into the config's checkpoint file.

    The one checkpoint service of `audit checkpoint` and the scheduled actor; `keys` is the app's keyring
    (app.crypto.keyring.get_keyring). Returns (checkpoint, False) when the head was already the last line;
    CheckpointError when the file cannot be written.
    """
    return take_checkpoint(session, cp.checkpoint_path(config), key_version=keys.current_version, key_for=cp.key_for(keys), now=now)
