"""Password policy and hashing: lengths in any script (pre-hashed bcrypt-sha256), common passwords, context words, rehash."""

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
        ("password1234", "commonly used"),
        ("PASSWORD1234", "commonly used"),
        ("staff@desk.example", "email address"),
        # Context words (issue 12 item 8): the product's name, parts of the user's own address
        ("my-DSR-Desk-login-2026", "product's name"),
        ("dsrdesk-is-the-place", "product's name"),
        ("Margot-Lindqvist-1990", "email address"),
        ("plum-lindqvist-harbour", "email address"),
        ("fjordline-secret-keys", "email address"),
    ],
)
def test_policy_refuses_with_a_clear_message(candidate: str, message: str) -> None:
    with pytest.raises(passwords.WeakPassword, match=message):
        passwords.check_policy(candidate, email="margot.lindqvist@fjordline.example" if "@" not in candidate else "staff@desk.example")


@pytest.mark.parametrize(
    "pw",
    [
        "é" * 64,  # 64 characters, 128 bytes: over bcrypt's 72-byte input, in one script
        "密码是一个很长的句子" * 7,  # 70 CJK characters, 210 bytes
        "Слово-за-словом-и-ещё-одно-слово-про-длинные-пароли-которые-длинее-72-байт",
        "a" * 100 + "b" * 28,  # 128 ASCII characters
    ],
)
def test_long_passwords_of_any_script_are_accepted_and_every_character_counts(pw: str) -> None:
    # Issue 12 item 8: at least 64 characters of any script, pre-hashed (bcrypt-sha256 v2), not refused over 72 bytes.
    passwords.check_policy(pw)
    stored = passwords.hash_password(pw, cost=4)
    assert stored.startswith("$bcrypt-sha256$v=2,t=2b,r=04$")
    assert passwords.verify_password(pw, stored, cost=4)
    # The last character matters (plain bcrypt would ignore everything after byte 72)
    assert not passwords.verify_password(pw[:-1] + ("x" if pw[-1] != "x" else "y"), stored, cost=4)


def test_a_plain_bcrypt_hash_from_before_still_verifies_and_asks_for_a_rehash() -> None:
    import bcrypt

    old = bcrypt.hashpw(b"plum-harbour-lantern-47", bcrypt.gensalt(rounds=4)).decode()
    assert passwords.verify_password("plum-harbour-lantern-47", old, cost=4)
    assert not passwords.verify_password("a" * 73, old, cost=4)
    assert passwords.needs_rehash(old, cost=4)


def test_the_prehash_is_keyed_by_the_salt_not_plain_sha256() -> None:
    import base64
    import hashlib

    stored = passwords.hash_password("plum-harbour-lantern-47", cost=4)
    salt = stored.split("$")[3]
    plain = base64.b64encode(hashlib.sha256(b"plum-harbour-lantern-47").digest())
    import bcrypt

    assert not bcrypt.checkpw(plain, f"$2b$04${salt}{stored.split('$')[4]}".encode())


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
