"""TOTP (RFC 6238): ±1 step, replay refused through the last accepted step; QR and recovery codes."""

from __future__ import annotations

import datetime as dt

import pyotp

from app.auth import mfa

NOW = dt.datetime(2026, 11, 21, 12, 0, 15, tzinfo=dt.UTC)
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def at(offset_steps: int) -> str:
    return mfa.code_at(SECRET, NOW + dt.timedelta(seconds=30 * offset_steps))


def test_rfc_6238_code_matches_pyotp() -> None:
    assert mfa.code_at(SECRET, NOW) == pyotp.TOTP(SECRET).at(NOW)


def test_current_code_is_accepted_once() -> None:
    step = mfa.verify_totp(SECRET, at(0), last_step=None, now=NOW)
    assert step == mfa.time_step(NOW)
    # The same code again, within its 30 seconds: a replay.
    assert mfa.verify_totp(SECRET, at(0), last_step=step, now=NOW + dt.timedelta(seconds=5)) is None


def test_previous_step_accepted_once_then_refused() -> None:
    step = mfa.verify_totp(SECRET, at(-1), last_step=None, now=NOW)
    assert step == mfa.time_step(NOW) - 1
    assert mfa.verify_totp(SECRET, at(-1), last_step=step, now=NOW) is None
    # The current step is still later than the one used, so it works.
    assert mfa.verify_totp(SECRET, at(0), last_step=step, now=NOW) == mfa.time_step(NOW)


def test_two_steps_away_is_refused() -> None:
    assert mfa.verify_totp(SECRET, at(-2), last_step=None, now=NOW) is None
    assert mfa.verify_totp(SECRET, at(2), last_step=None, now=NOW) is None
    assert mfa.verify_totp(SECRET, at(1), last_step=None, now=NOW) == mfa.time_step(NOW) + 1


def test_an_older_step_after_a_newer_one_is_refused() -> None:
    newer = mfa.verify_totp(SECRET, at(1), last_step=None, now=NOW)
    assert newer is not None
    assert mfa.verify_totp(SECRET, at(0), last_step=newer, now=NOW) is None


def test_garbage_is_refused() -> None:
    for code in ("", "12345", "1234567", "abcdef", "12 34 5x"):
        assert mfa.verify_totp(SECRET, code, last_step=None, now=NOW) is None
    # Spaces as an app shows them are fine.
    code = at(0)
    assert mfa.verify_totp(SECRET, f"{code[:3]} {code[3:]}", last_step=None, now=NOW) is not None


def test_qr_is_inline_svg_without_script() -> None:
    svg = mfa.qr_svg(mfa.provisioning_uri(SECRET, account="a@desk.example", issuer="DSR Desk"))
    assert svg.startswith("<svg") and "<script" not in svg and "http" not in svg.split(">", 1)[0]


def test_recovery_codes_are_ten_distinct_and_hash_stably() -> None:
    codes = mfa.new_recovery_codes()
    assert len(codes) == 10 == len(set(codes))
    assert all(len(c) == 19 for c in codes)
    assert mfa.hash_recovery_code(codes[0]) == mfa.hash_recovery_code(codes[0].upper().replace("-", " "))
    assert mfa.hash_recovery_code(codes[0]) != mfa.hash_recovery_code(codes[1])
