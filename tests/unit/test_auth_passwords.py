"""Password policy and bcrypt: lengths, the 72-byte limit, common passwords, rehash on cost change."""

from __future__ import annotations

import pytest

from app.auth import passwords


def test_policy_accepts_a_reasonable_passphrase() -> None:
    passwords.check_policy("plum-harbour-lantern-47")


@pytest.mark.parametrize(
    ("candidate", "message"),
    [
        ("short-pw-1", "at least 12"),
        ("x" * 129, "at most 128"),
        ("é" * 37, "longer than 72 bytes"),  # 37 characters, 74 bytes
        ("ab" + "é" * 35 + "c", "longer than 72 bytes"),  # exactly 73 bytes
        ("password1234", "commonly used"),
        ("PASSWORD1234", "commonly used"),
        ("staff@desk.example", "email address"),
    ],
)
def test_policy_refuses_with_a_clear_message(candidate: str, message: str) -> None:
    with pytest.raises(passwords.WeakPassword, match=message):
        passwords.check_policy(candidate, email="staff@desk.example")


def test_72_bytes_exactly_is_accepted_and_verifies() -> None:
    pw = "Zq" + "é" * 35  # 2 + 70 = 72 bytes
    assert len(pw.encode()) == 72
    passwords.check_policy(pw)
    stored = passwords.hash_password(pw, cost=4)
    assert passwords.verify_password(pw, stored, cost=4)


def test_an_over_long_password_fails_verification_instead_of_raising() -> None:
    stored = passwords.hash_password("plum-harbour-lantern-47", cost=4)
    # bcrypt 5 raises ValueError on more than 72 bytes; the desk answers "wrong password".
    assert passwords.verify_password("a" * 73, stored, cost=4) is False
    with pytest.raises(passwords.WeakPassword):
        passwords.hash_password("a" * 73, cost=4)


def test_wrong_password_and_missing_user_both_answer_false() -> None:
    stored = passwords.hash_password("plum-harbour-lantern-47", cost=4)
    assert passwords.verify_password("plum-harbour-lantern-48", stored, cost=4) is False
    assert passwords.verify_password("plum-harbour-lantern-47", None, cost=4) is False


def test_needs_rehash_when_the_cost_changes() -> None:
    stored = passwords.hash_password("plum-harbour-lantern-47", cost=4)
    assert passwords.hash_cost(stored) == 4
    assert not passwords.needs_rehash(stored, cost=4)
    assert passwords.needs_rehash(stored, cost=5)


def test_the_shipped_list_is_large_and_lowercase() -> None:
    common = passwords.common_passwords()
    assert len(common) > 10_000
    assert "123456" in common and "qwerty" in common
