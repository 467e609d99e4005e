"""One value's blind index under many keys at once (a request's subject looked up across every controller)."""

from __future__ import annotations

import os

from app.crypto.cipher import blind_index, blind_indexes


def test_one_value_under_many_keys_is_what_each_key_gives_alone() -> None:
    keys = {n: os.urandom(32) for n in range(50)}
    for kind, value in (("email", " Jane.Roe+News@Example.ORG "), ("text", "BR-1001"), ("phone", "+44 20 7946 0958")):
        assert blind_indexes(keys, kind, value) == {n: blind_index(key, kind, value) for n, key in keys.items()}
