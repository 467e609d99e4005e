"""Signed checkpoints of the chain head, appended to a file outside the database.

An in-database chain cannot see its own tail cut off (or the whole chain
recomputed by someone who can write to the table); a signed (seq, hash) kept
elsewhere can, in the manner of a certificate-transparency signed tree head.

One line per checkpoint, ASCII, space separated:

    v1 <seq> <hash> <signed_at> <master_version> <mac>

where `signed_at` is UTC `YYYY-MM-DDTHH:MM:SS.ffffffZ`, `master_version` names
the master secret the key came from, and `mac` is lowercase hex
HMAC-SHA256(key, "v1 <seq> <hash> <signed_at> <master_version>") with
key = keyring.derive("audit-checkpoint", master_version).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import logging.handlers
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from app.audit.chain import format_time
from app.exceptions import DeskError, Refused

PURPOSE = "audit-checkpoint"
LINE_VERSION = "v1"
_LINE = re.compile(r"^v1 (\d+) ([0-9a-f]{64}) (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (\d+) ([0-9a-f]{64})$")
# Enough to hold the last line whatever the seq; lines are about 190 bytes.
_TAIL_BYTES = 4096

KeyFor = Callable[[int], bytes]


class CheckpointError(DeskError):
    """The checkpoint file cannot be read or written."""


class UnknownCheckpointKey(CheckpointError):
    """A checkpoint names a master key version whose secret is not configured."""


class CheckpointFolderMissing(Refused):
    """The folder of a checkpoint file the operator named does not exist (a typo must not start a new file elsewhere)."""


@dataclass(frozen=True)
class Checkpoint:
    """One signed chain head."""

    seq: int
    hash: str
    signed_at: dt.datetime
    key_version: int
    mac: str
    line_no: int = 0

    def payload(self) -> bytes:
        """The signed text."""
        return f"{LINE_VERSION} {self.seq} {self.hash} {format_time(self.signed_at)} {self.key_version}".encode("ascii")

    def line(self) -> str:
        """The file line, without its newline."""
        return f"{self.payload().decode('ascii')} {self.mac}"


def checkpoint_path(config: Mapping[str, Any]) -> Path:
    """Where the checkpoints of an app config go: AUDIT_CHECKPOINT_PATH, or <INSTANCE_PATH>/audit-checkpoints.log."""
    configured = config.get("AUDIT_CHECKPOINT_PATH")
    return Path(configured) if configured else Path(config["INSTANCE_PATH"]) / "audit-checkpoints.log"


def require_folder(path: Path) -> None:
    """CheckpointFolderMissing unless the folder `path` goes into exists; creates nothing."""
    if not path.parent.is_dir():
        raise CheckpointFolderMissing(f"no folder {path.parent} for the checkpoint file; create it first")


def sign(seq: int, head_hash: str, *, key_version: int, key_for: KeyFor, now: dt.datetime) -> Checkpoint:
    """A checkpoint of (seq, hash) signed with the key of `key_version`."""
    unsigned = Checkpoint(seq=seq, hash=head_hash, signed_at=now.astimezone(dt.UTC), key_version=key_version, mac="")
    mac = hmac.new(key_for(key_version), unsigned.payload(), hashlib.sha256).hexdigest()
    return Checkpoint(seq=seq, hash=head_hash, signed_at=unsigned.signed_at, key_version=key_version, mac=mac)


def is_authentic(checkpoint: Checkpoint, key_for: KeyFor) -> bool:
    """Whether the MAC matches (constant-time); UnknownCheckpointKey if its key version is not configured."""
    try:
        key = key_for(checkpoint.key_version)
    except LookupError as exc:
        raise UnknownCheckpointKey(checkpoint.key_version) from exc
    expected = hmac.new(key, checkpoint.payload(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, checkpoint.mac)


def parse_line(text: str, line_no: int) -> Checkpoint | None:
    """The checkpoint on one line, or None when the line is malformed."""
    match = _LINE.match(text.rstrip("\n"))
    if match is None:
        return None
    seq, head, at, version, mac = match.groups()
    signed_at = dt.datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    return Checkpoint(seq=int(seq), hash=head, signed_at=signed_at, key_version=int(version), mac=mac, line_no=line_no)


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of every non-empty line; nothing when the file does not exist yet."""
    if not path.exists():
        return
    with path.open("r", encoding="ascii", errors="replace") as handle:
        for number, text in enumerate(handle, start=1):
            if text.strip():
                yield number, text.rstrip("\n")


def last_checkpoint(path: Path) -> Checkpoint | None:
    """The last well-formed line of the file (unverified), read from its tail."""
    if not path.exists():
        return None
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - _TAIL_BYTES))
        tail = handle.read().decode("ascii", errors="replace").splitlines()
    for text in reversed(tail):
        found = parse_line(text, 0)
        if found is not None:
            return found
    return None


def append(path: Path, checkpoint: Checkpoint) -> None:
    """Append one line and fsync it; O_APPEND keeps concurrent writers' lines whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    except OSError as exc:
        raise CheckpointError(f"cannot open the checkpoint file ({exc.strerror})") from None
    try:
        os.write(fd, (checkpoint.line() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def send_to_syslog(target: str, checkpoint: Checkpoint) -> None:
    """Send the checkpoint's line to syslog (facility auth, priority info): a socket path, or HOST:PORT over UDP.

    CheckpointError when the target is malformed or cannot be reached. The line holds only
    the seq, the head hash, the time, the key version and the HMAC: nothing personal.
    """
    if target.startswith("/"):
        address: str | tuple[str, int] = target
    else:
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit():
            raise CheckpointError("the syslog target is a socket path or HOST:PORT")
        address = (host, int(port))
    try:
        handler = logging.handlers.SysLogHandler(address=address, facility=logging.handlers.SysLogHandler.LOG_AUTH)
    except OSError as exc:
        raise CheckpointError(f"cannot reach syslog ({exc.strerror})") from None
    try:
        record = logging.LogRecord("dsr-desk.audit", logging.INFO, __file__, 0, "dsr-desk audit checkpoint %s", (checkpoint.line(),), None)
        handler.emit(record)
    finally:
        handler.close()


class KeySource(Protocol):
    """What checkpoints need from the keyring (app.crypto.keyring.Keyring fits)."""

    current_version: int

    def has_version(self, version: int) -> bool: ...

    def derive(self, purpose: str, version: int | None = None) -> bytes: ...


def key_for(keys: KeySource) -> KeyFor:
    """The checkpoint key of each master version; LookupError for a version not configured."""

    def lookup(version: int) -> bytes:
        if not keys.has_version(version):
            raise LookupError(version)
        return keys.derive(PURPOSE, version)

    return lookup
