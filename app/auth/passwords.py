"""Password policy and hashing; no Flask here.

Hashing follows passlib's `bcrypt_sha256` version 2, a published pattern, in its own
format so passlib can read the hashes: the password (any length, any script) is
first reduced to `base64(HMAC-SHA256(key=the bcrypt salt, msg=password UTF-8))`
(44 ASCII bytes, under bcrypt's 72-byte limit, no NUL bytes), and that is hashed
with bcrypt under the same salt. Keying the HMAC with the per-hash salt (not plain
SHA-256) means a leaked unsalted SHA-256 of the password elsewhere cannot be
"shucked" against our hashes. Stored as `$bcrypt-sha256$v=2,t=2b,r=<cost>$<salt>$<digest>`.
Plain bcrypt hashes made before (`$2b$...`) still verify and are rehashed at the next login.

Policy (ASVS 5.0 6.2): 12 to 128 characters of any script, not a common password and
no context word (the product's name, the parts of the user's own address).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
from pathlib import Path

import bcrypt

from app.exceptions import DeskError, Refused

MIN_LENGTH = 12
MAX_LENGTH = 128
PREFIX = "$bcrypt-sha256$"
_PREHASHED = re.compile(r"^\$bcrypt-sha256\$v=2,t=2b,r=(\d\d)\$([./A-Za-z0-9]{22})\$([./A-Za-z0-9]{31})$")
# The product's own name in its spellings: a password containing it is among the first an attacker tries here.
PRODUCT_WORDS = ("dsrdesk", "dsr desk", "dsr-desk", "dsr_desk")
COMMON_PASSWORDS_FILE = Path(__file__).with_name("common-passwords.txt")
_COST = re.compile(r"^\$2[aby]\$(\d\d)\$")
_NOT_ALNUM = re.compile(r"[\W_]+")


class PasswordError(DeskError):
    """Base of the password module's errors."""


class WeakPassword(PasswordError, Refused):
    """The password breaks the policy; the message is safe to show to its owner."""


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords, lowercased."""
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def context_words(email: str | None) -> set[str]:
    """Words a password must not contain: the product's name and the parts of the address (3+ characters)."""
    words = {_NOT_ALNUM.sub("", w) for w in PRODUCT_WORDS}
    if email:
        local, _, domain = email.strip().lower().partition("@")
        pieces = re.split(r"[.+_\-]", local) + [local] + domain.split(".")[:-1]
        words |= {_NOT_ALNUM.sub("", p) for p in pieces if len(_NOT_ALNUM.sub("", p)) >= 3}
    return {w for w in words if w}


def check_policy(password: str, *, email: str | None = None) -> None:
    """Raise WeakPassword unless the password is 12-128 characters, not common and free of context words."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"The password must be at least {MIN_LENGTH} characters long.")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"The password must be at most {MAX_LENGTH} characters long.")
    if password.strip().lower() in common_passwords():
        raise WeakPassword("This password is on the list of commonly used passwords. Choose another.")
    if email and password.strip().lower() == email.strip().lower():
        raise WeakPassword("The password must not be the email address.")
    folded = _NOT_ALNUM.sub("", password.casefold())
    if any(word in folded for word in context_words(email)):
        raise WeakPassword("The password must not contain the product's name or a part of your email address.")


def _prehash(password: str, salt: str) -> bytes:
    digest = hmac.new(salt.encode("ascii"), password.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest)


def hash_password(password: str, *, cost: int) -> str:
    """A bcrypt-sha256 (v2) hash of a password of any length."""
    config = bcrypt.gensalt(rounds=cost, prefix=b"2b").decode("ascii")
    salt = config[-22:]
    full = bcrypt.hashpw(_prehash(password, salt), config.encode("ascii")).decode("ascii")
    return f"{PREFIX}v=2,t=2b,r={cost:02d}${salt}${full[-31:]}"


@functools.cache
def _dummy_hash(cost: int) -> bytes:
    # A hash to check against when there is no user (or the input is unusable),
    # so that every failed login costs the same bcrypt time.
    return bcrypt.hashpw(b"dummy-password-for-timing", bcrypt.gensalt(rounds=cost))


def verify_password(password: str, stored_hash: str | None, *, cost: int) -> bool:
    """True when the password matches; always spends one bcrypt check of about `cost`."""
    match = _PREHASHED.match(stored_hash or "")
    if match is not None:
        rounds, salt, digest = match.groups()
        expected = f"$2b${rounds}${salt}{digest}".encode("ascii")
        return bcrypt.checkpw(_prehash(password, salt), expected)
    encoded = password.encode("utf-8")
    # A plain bcrypt hash from before the pre-hash: it only ever held passwords of at most 72 bytes.
    if stored_hash is None or len(encoded) > 72 or _COST.match(stored_hash) is None:
        bcrypt.checkpw(b"not-the-password", _dummy_hash(cost))
        return False
    return bcrypt.checkpw(encoded, stored_hash.encode("ascii"))


def hash_cost(stored_hash: str) -> int | None:
    """The bcrypt cost factor recorded in a hash, or None when it is not a hash of ours."""
    match = _PREHASHED.match(stored_hash) or _COST.match(stored_hash)
    return int(match.group(1)) if match else None


def needs_rehash(stored_hash: str, *, cost: int) -> bool:
    """True when the hash is a plain bcrypt one (before the pre-hash) or of another cost than the configured one."""
    return not stored_hash.startswith(PREFIX) or hash_cost(stored_hash) != cost
