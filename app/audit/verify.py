"""Walk the audit chain and the signed checkpoints; report the first broken event."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import checkpoint as cp
from app.audit.chain import GENESIS, Link, event_hash, format_time, personal_digest
from app.audit.models import AuditEvent

BATCH = 2000


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of `verify_chain`: ok, or the first broken event and why."""

    ok: bool
    events: int
    head_seq: int
    last_checkpoint: cp.Checkpoint | None
    checkpoints: int
    broken_seq: int | None = None
    broken_id: int | None = None
    reason: str = ""

    def message(self) -> str:
        """One line for the operator."""
        if not self.ok:
            where = f"event seq {self.broken_seq}" + (f" (id {self.broken_id})" if self.broken_id is not None else "")
            return f"BROKEN at {where}: {self.reason}"
        if self.last_checkpoint is None:
            return f"ok, {self.events} events, no checkpoint yet"
        last = self.last_checkpoint
        return f"ok, {self.events} events, last checkpoint at seq {last.seq} signed {format_time(last.signed_at)}"


_COLUMNS = (
    AuditEvent.id,
    AuditEvent.seq,
    AuditEvent.occurred_at,
    AuditEvent.actor_kind,
    AuditEvent.actor_id,
    AuditEvent.actor_name,
    AuditEvent.action,
    AuditEvent.target_type,
    AuditEvent.target_id,
    AuditEvent.controller_id,
    AuditEvent.details_json,
    AuditEvent.prev_hash,
    AuditEvent.hash,
    AuditEvent.personal_ct,
)


class _Broken(Exception):
    def __init__(self, seq: int, event_id: int | None, reason: str) -> None:
        super().__init__(reason)
        self.seq, self.event_id, self.reason = seq, event_id, reason


def _load_checkpoints(path: Path, key_for: cp.KeyFor) -> list[cp.Checkpoint]:
    found: list[cp.Checkpoint] = []
    retired: list[cp.Checkpoint] = []
    for number, text in cp.read_lines(path):
        checkpoint = cp.parse_line(text, number)
        if checkpoint is None:
            raise _Broken(0, None, f"checkpoint file line {number} is malformed")
        try:
            authentic = cp.is_authentic(checkpoint, key_for)
        except cp.UnknownCheckpointKey:
            retired.append(checkpoint)
            continue
        if not authentic:
            raise _Broken(checkpoint.seq, None, f"checkpoint file line {number} has a bad signature")
        found.append(checkpoint)
    # A checkpoint under a retired master version cannot be checked any more. It adds
    # nothing once a verifiable checkpoint at the same or a later seq exists (the chain
    # links fix every earlier event); otherwise the newest head would go unchecked.
    newest = max((c.seq for c in found), default=-1)
    for checkpoint in retired:
        if checkpoint.seq > newest:
            raise _Broken(
                checkpoint.seq,
                None,
                f"checkpoint file line {checkpoint.line_no} is signed under master key version {checkpoint.key_version}, which is not configured"
                " (run `audit checkpoint` under the current version before retiring an old one)",
            )
    return found


def verify_chain(session: Session, checkpoint_path: Path, key_for: cp.KeyFor, *, progress: Callable[[int], None] | None = None) -> VerifyResult:
    """Check every link (seq contiguous from 1, prev_hash, recomputed hash) and every checkpoint, in batches.

    Needs no data key: an event's personal part enters its hash as the SHA-256 of its ciphertext,
    so events whose month key was shredded verify like any other.
    """
    try:
        checkpoints = _load_checkpoints(checkpoint_path, key_for)
    except _Broken as exc:
        return VerifyResult(False, 0, 0, None, 0, exc.seq, exc.event_id, exc.reason)
    expected: dict[int, list[cp.Checkpoint]] = defaultdict(list)
    for checkpoint in checkpoints:
        expected[checkpoint.seq].append(checkpoint)
    last = max(checkpoints, key=lambda c: (c.seq, c.signed_at)) if checkpoints else None
    prev_seq, prev_hash, count = 0, GENESIS, 0
    try:
        for checkpoint in expected.get(0, []):
            if checkpoint.hash != GENESIS:
                raise _Broken(0, None, f"checkpoint file line {checkpoint.line_no} signed an empty chain with another hash")
        while True:
            rows = session.execute(select(*_COLUMNS).where(AuditEvent.seq > prev_seq).order_by(AuditEvent.seq).limit(BATCH)).all()
            if not rows:
                break
            for row in rows:
                if row.seq != prev_seq + 1:
                    raise _Broken(prev_seq + 1, None, f"event seq {prev_seq + 1} is missing (the next event is seq {row.seq}, id {row.id})")
                if row.prev_hash != prev_hash:
                    raise _Broken(row.seq, row.id, f"prev_hash does not match the hash of event seq {prev_seq}")
                try:
                    details = json.loads(row.details_json)
                except ValueError:
                    raise _Broken(row.seq, row.id, "details are not valid JSON") from None
                link = Link(
                    seq=row.seq,
                    at=row.occurred_at,
                    actor_kind=row.actor_kind,
                    actor_id=row.actor_id,
                    actor_name=row.actor_name,
                    action=row.action,
                    target_type=row.target_type,
                    target_id=row.target_id,
                    controller_id=row.controller_id,
                    details=details,
                    prev_hash=row.prev_hash,
                    # The ciphertext, not the plaintext: a part whose month key was shredded verifies the same.
                    personal=personal_digest(None if row.personal_ct is None else bytes(row.personal_ct)),
                )
                if event_hash(link) != row.hash:
                    raise _Broken(row.seq, row.id, "the stored hash does not match the event's content")
                for checkpoint in expected.get(row.seq, []):
                    if checkpoint.hash != row.hash:
                        raise _Broken(
                            row.seq, row.id, f"differs from checkpoint file line {checkpoint.line_no}: the chain was rewritten at or before this event"
                        )
                prev_seq, prev_hash = row.seq, row.hash
                count += 1
            if progress is not None:
                progress(len(rows))
        if last is not None and last.seq > prev_seq:
            raise _Broken(
                prev_seq + 1, None, f"checkpoint file line {last.line_no} signed seq {last.seq} but the chain ends at seq {prev_seq}: events were removed"
            )
    except _Broken as exc:
        return VerifyResult(False, count, prev_seq, last, len(checkpoints), exc.seq, exc.event_id, exc.reason)
    return VerifyResult(True, count, prev_seq, last, len(checkpoints))
