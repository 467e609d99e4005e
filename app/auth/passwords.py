"""Password policy and bcrypt hashing; no Flask here.

bcrypt reads at most 72 bytes and bcrypt 5 raises on longer input. Rather than
pre-hash (which changes the hash format and invites "password shucking"), a
password over 72 bytes in UTF-8 is refused with a clear message when it is set,
and simply fails (after the same bcrypt work) when it is tried at login.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import bcrypt

from app.exceptions import DeskError, Refused

MIN_LENGTH = 12
MAX_LENGTH = 128
MAX_BYTES = 72  # bcrypt's input limit
COMMON_PASSWORDS_FILE = Path(__file__).with_name("common-passwords.txt")
_COST = re.compile(r"^\$2[aby]\$(\d\d)\$")


class PasswordError(DeskError):
    """Base of the password module's errors."""


class WeakPassword(PasswordError, Refused):
    """The password breaks the policy; the message is safe to show to its owner."""


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords, lowercased."""
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def check_policy(password: str, *, email: str | None = None) -> None:
    """Raise WeakPassword unless the password is 12-128 characters, at most 72 bytes and not common."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"The password must be at least {MIN_LENGTH} characters long.")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"The password must be at most {MAX_LENGTH} characters long.")
    if len(password.encode("utf-8")) > MAX_BYTES:
        raise WeakPassword(
            f"The password is longer than {MAX_BYTES} bytes in UTF-8, the most bcrypt can use "
            "(accented letters and symbols take 2-4 bytes each). Choose a shorter one."
        )
    if password.strip().lower() in common_passwords():
        raise WeakPassword("This password is on the list of commonly used passwords. Choose another.")
    if email and password.strip().lower() == email.strip().lower():
        raise WeakPassword("The password must not be the email address.")


def hash_password(password: str, *, cost: int) -> str:
    """A bcrypt hash of a password that passed `check_policy` (or at least fits 72 bytes)."""
    encoded = password.encode("utf-8")
    if len(encoded) > MAX_BYTES:
        raise WeakPassword(f"The password is longer than {MAX_BYTES} bytes in UTF-8.")
    return bcrypt.hashpw(encoded, bcrypt.gensalt(rounds=cost)).decode("ascii")


@functools.cache
def _dummy_hash(cost: int) -> bytes:
    # A hash to check against when there is no user (or the input is unusable),
    # so that every failed login costs the same bcrypt time.
    return bcrypt.hashpw(b"dummy-password-for-timing", bcrypt.gensalt(rounds=cost))


def verify_password(password: str, stored_hash: str | None, *, cost: int) -> bool:
    """True when the password matches; always spends one bcrypt check of about `cost`."""
    encoded = password.encode("utf-8")
    usable = stored_hash is not None and len(encoded) <= MAX_BYTES and _COST.match(stored_hash) is not None
    if not usable:
        bcrypt.checkpw(b"not-the-password", _dummy_hash(cost))
        return False
    assert stored_hash is not None
    return bcrypt.checkpw(encoded, stored_hash.encode("ascii"))


def hash_cost(stored_hash: str) -> int | None:
    """The bcrypt cost factor recorded in a hash, or None when it is not a bcrypt hash."""
    match = _COST.match(stored_hash)
    return int(match.group(1)) if match else None


def needs_rehash(stored_hash: str, *, cost: int) -> bool:
    """True when the hash was made with another cost than the configured one."""
    return hash_cost(stored_hash) != cost
