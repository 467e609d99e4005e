"""Golden fixtures: the stored formats must not drift (old rows and backups must still decrypt)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.crypto.cipher import (
    DecryptionError,
    blind_index,
    decrypt_field,
    encrypt_field,
    key_id_of,
    normalise_phone,
    unwrap_key,
    wrap_context,
)
from app.crypto.keyring import Keyring

GOLDEN_SECRET = "golden-master-secret-0123456789abcdef"
GOLDEN_WRAP_KEY = "823bb0e607d7cc79656a7c0a647f6fb95b5f54cd9ea57e944605103ade851ae8"
DATA_KEY = bytes(range(32))
ROW = "0" * 32
# format 1 | key 7 | nonce 0x64..0x6f | AES-256-GCM("golden@example.com", AAD = header|controller_contacts.email_ct:000...)
GOLDEN_FIELD = "01000000076465666768696a6b6c6d6e6f2f74b2021c8716fb46033298b600449e2dafeabb05a895443b940bf17a6920eed38a"
GOLDEN_WRAPPED = "016465666768696a6b6c6d6e6f432622c04a0e289e8cc61c8712db2e0ca385e12471ab474d94e2e2eb0e503e5bd3e24e5324361291cd61172b8fba582c"
GOLDEN_INDEX = "1cc5af3fa2310f8faed3188e560bf9aa"


def test_golden_key_derivation_wrap_field_and_index() -> None:
    keyring = Keyring(1, {1: GOLDEN_SECRET})
    assert keyring.derive("key-wrap").hex() == GOLDEN_WRAP_KEY
    assert unwrap_key(keyring.derive("key-wrap"), bytes.fromhex(GOLDEN_WRAPPED), context=wrap_context("controller:3", 1, "data", 1)) == DATA_KEY
    blob = bytes.fromhex(GOLDEN_FIELD)
    assert key_id_of(blob) == 7
    assert decrypt_field(AESGCM(DATA_KEY), blob, table="controller_contacts", column="email_ct", row_uid=ROW) == b"golden@example.com"
    assert blind_index(bytes(32), "email", " Golden@Example.com ").hex() == GOLDEN_INDEX


def test_fresh_nonce_each_time_and_round_trip() -> None:
    aead = AESGCM(DATA_KEY)
    a = encrypt_field(aead, 7, b"same", table="t", column="c", row_uid=ROW)
    b = encrypt_field(aead, 7, b"same", table="t", column="c", row_uid=ROW)
    assert a != b and a[5:17] != b[5:17]
    assert decrypt_field(aead, a, table="t", column="c", row_uid=ROW) == b"same"


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), {}),  # flipped tag byte
        (lambda b: b[:20] + bytes([b[20] ^ 1]) + b[21:], {}),  # flipped ciphertext byte
        (lambda b: b[:4] + bytes([8]) + b[5:], {}),  # relabelled to another key id
        (lambda b: b, {"column": "name_ct"}),  # moved to another column
        (lambda b: b, {"table": "tickets"}),  # moved to another table
        (lambda b: b, {"row_uid": "1" * 32}),  # moved to another row
    ],
)
def test_any_change_fails_clearly(change: object, where: dict[str, str]) -> None:
    blob = change(bytes.fromhex(GOLDEN_FIELD))  # type: ignore[operator]
    target = {"table": "controller_contacts", "column": "email_ct", "row_uid": ROW, **where}
    with pytest.raises(DecryptionError, match="cannot decrypt"):
        decrypt_field(AESGCM(DATA_KEY), blob, **target)


def test_unknown_format_and_truncation_fail_clearly() -> None:
    blob = bytes.fromhex(GOLDEN_FIELD)
    with pytest.raises(DecryptionError, match="unknown format 2"):
        key_id_of(b"\x02" + blob[1:])
    with pytest.raises(DecryptionError, match="too short"):
        key_id_of(blob[:20])


def test_phone_numbers_index_in_e164() -> None:
    assert normalise_phone("0044 (20) 7946-0958") == "+442079460958"
    assert blind_index(bytes(32), "phone", "+44 20 7946 0958") == blind_index(bytes(32), "phone", "0044-20-7946-0958")
    with pytest.raises(ValueError, match="international form"):
        normalise_phone("020 7946 0958")
