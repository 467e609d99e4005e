"""TOTP (RFC 6238) with replay protection, QR rendering and recovery codes; no Flask here.

pyotp checks a code against a time window but remembers nothing, so a code
could be used twice within its 30 seconds. `verify_totp` returns the time
step it accepted; the caller stores it and passes it back as `last_step`, and
only a later step is accepted from then on (as django-otp's `last_t`).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import secrets

import pyotp
import segno

PERIOD = 30
DIGITS = 6
TOLERANCE = 1  # steps either side of now, for clock drift and typing time
RECOVERY_CODE_COUNT = 10
_CODE = re.compile(r"^\d{6}$")
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread


def new_secret() -> str:
    """A fresh base32 TOTP secret (160 bits)."""
    return pyotp.random_base32(length=32)


def time_step(now: dt.datetime) -> int:
    """The RFC 6238 counter for a moment."""
    return int(now.timestamp()) // PERIOD


def normalise_code(code: str) -> str:
    """The code as typed, without spaces or dashes."""
    return re.sub(r"[\s-]", "", code or "")


def looks_like_totp(code: str) -> bool:
    """True for six digits (after removing spaces)."""
    return _CODE.match(normalise_code(code)) is not None


def verify_totp(secret: str, code: str, *, last_step: int | None, now: dt.datetime) -> int | None:
    """The time step the code belongs to, if it is valid within ±1 step and later than `last_step`; else None."""
    code = normalise_code(code)
    if not _CODE.match(code):
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD)
    current = time_step(now)
    accepted: int | None = None
    for step in range(current - TOLERANCE, current + TOLERANCE + 1):
        # Compare every candidate so timing does not tell which step matched.
        if hmac.compare_digest(totp.generate_otp(step), code) and accepted is None:
            accepted = step
    if accepted is None or (last_step is not None and accepted <= last_step):
        return None
    return accepted


def code_at(secret: str, now: dt.datetime) -> str:
    """The code an authenticator app shows at `now` (for tests and the demo)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD).generate_otp(time_step(now))


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app scans."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD).provisioning_uri(name=account, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """The URI as an inline SVG QR code, rendered here so no script or CDN is needed."""
    return str(segno.make(uri, error="m").svg_inline(scale=5, border=2, dark="#000", light="#fff", title="TOTP enrolment QR code"))


def new_recovery_codes(count: int = RECOVERY_CODE_COUNT) -> list[str]:
    """Fresh single-use recovery codes, 80 bits each, as xxxx-xxxx-xxxx-xxxx."""
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(16))
        codes.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
    return codes


def hash_recovery_code(code: str) -> str:
    """SHA-256 of the normalised code (hex): the inner digest, never stored alone (see `keyed_recovery_hash`)."""
    cleaned = normalise_code(code).lower()
    return hashlib.sha256(cleaned.encode("ascii", errors="replace")).hexdigest()


def keyed_digest(key: bytes, key_version: int, user_id: int, inner: str) -> str:
    """`k<version>$` + base64 HMAC-SHA256(key, "<user id>:<inner digest>"): what recovery_codes.code_hash stores.

    ASVS 5.0 6.5.2: a keyed hash, so a copy of the table alone (a backup, a read-only
    leak) cannot be tested offline against guesses, and a code is bound to its user.
    The key is derived from the master secret (`keyring.derive(RECOVERY_KEY_PURPOSE, version)`).
    """
    mac = hmac.new(key, f"{user_id}:{inner}".encode("ascii"), hashlib.sha256).digest()
    return f"k{key_version}${base64.b64encode(mac).decode('ascii')}"


def keyed_recovery_hash(key: bytes, key_version: int, user_id: int, code: str) -> str:
    """The stored form of a recovery code of `user_id` under master key `key_version`."""
    return keyed_digest(key, key_version, user_id, hash_recovery_code(code))


RECOVERY_KEY_PURPOSE = "recovery-code"
