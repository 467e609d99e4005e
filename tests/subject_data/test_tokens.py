"""Single-use HS256 download tokens: replay, expiry, concurrent use, algorithm confusion, missing claims."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import threading
from typing import Any

import jwt
import pytest
import time_machine
from flask import Flask
from sqlalchemy.orm import Session

from app.crypto.keyring import get_keyring
from app.extensions import db
from app.subject_data import tokens

T0 = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)
RESOURCE = "export:7"


@pytest.fixture
def key(app: Flask) -> bytes:
    return get_keyring(app).derive(tokens.KEY_PURPOSE)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "jti": "j" * 32,
        "sub": "5",
        "res": RESOURCE,
        "aud": tokens.AUDIENCE,
        "iat": int(T0.timestamp()),
        "exp": int((T0 + tokens.TTL).timestamp()),
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_a_token_downloads_once_and_a_replay_is_refused(session: Session, key: bytes) -> None:
    with time_machine.travel(T0, tick=False):
        token = tokens.issue(session, key, resource=RESOURCE, user_id=5, now=T0)
        assert tokens.redeem(session, token, key, user_id=5, resource=RESOURCE, now=T0).resource == RESOURCE
        with pytest.raises(tokens.TokenNotUsable):
            tokens.redeem(session, token, key, user_id=5, resource=RESOURCE, now=T0 + dt.timedelta(seconds=1))


def test_a_token_is_dead_after_sixty_seconds(session: Session, key: bytes) -> None:
    with time_machine.travel(T0, tick=False) as clock:
        token = tokens.issue(session, key, resource=RESOURCE, user_id=5, now=T0)
        clock.shift(dt.timedelta(seconds=59))
        tokens.verify(token, key)
        clock.shift(dt.timedelta(seconds=2))
        with pytest.raises(tokens.InvalidToken, match="expired"):
            tokens.redeem(session, token, key, user_id=5, resource=RESOURCE, now=T0 + dt.timedelta(seconds=61))
        # Even with the signature check's clock wrong, the database refuses a jti past its expiry.
        with pytest.raises(tokens.TokenNotUsable):
            jti = jwt.decode(token, options={"verify_signature": False})["jti"]
            tokens.consume(session, tokens.Claims(jti=jti, user_id=5, resource=RESOURCE), user_id=5, resource=RESOURCE, now=T0 + dt.timedelta(seconds=61))


def test_a_token_is_for_one_person_and_one_file(session: Session, key: bytes) -> None:
    with time_machine.travel(T0, tick=False):
        token = tokens.issue(session, key, resource=RESOURCE, user_id=5, now=T0)
        with pytest.raises(tokens.TokenNotUsable):
            tokens.redeem(session, token, key, user_id=6, resource=RESOURCE, now=T0)
        with pytest.raises(tokens.TokenNotUsable):
            tokens.redeem(session, token, key, user_id=5, resource="export:8", now=T0)
        # Refusals consumed nothing: the rightful download still works.
        tokens.redeem(session, token, key, user_id=5, resource=RESOURCE, now=T0)


@pytest.mark.parametrize("alg", ["none", "RS256", "HS512", "HS384"])
def test_algorithm_confusion_is_refused(key: bytes, alg: str) -> None:
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims()).encode())
    signing_input = f"{header}.{payload}".encode()
    digest = {"none": None, "RS256": hashlib.sha256, "HS512": hashlib.sha512, "HS384": hashlib.sha384}[alg]
    # The classic confusion: the server's HMAC key used as if it were the RS256 public key.
    signature = "" if digest is None else _b64(hmac.new(key, signing_input, digest).digest())
    with time_machine.travel(T0, tick=False), pytest.raises(tokens.InvalidToken):
        tokens.verify(f"{header}.{payload}.{signature}", key)


def test_a_correct_hs256_token_passes_the_same_checks(key: bytes) -> None:
    with time_machine.travel(T0, tick=False):
        assert tokens.verify(jwt.encode(claims(), key, algorithm="HS256"), key).user_id == 5


@pytest.mark.parametrize("missing", ["exp", "iat", "jti", "sub", "aud", "res"])
def test_a_token_missing_a_claim_is_refused(key: bytes, missing: str) -> None:
    token = jwt.encode(claims(**{missing: None}), key, algorithm="HS256")
    with time_machine.travel(T0, tick=False), pytest.raises(tokens.InvalidToken):
        tokens.verify(token, key)


@pytest.mark.parametrize(
    "bad",
    [
        {"aud": "someone-else"},
        {"sub": "not-a-number"},
        {"exp": int((T0 - dt.timedelta(seconds=1)).timestamp())},
    ],
)
def test_wrong_claims_are_refused(key: bytes, bad: dict[str, Any]) -> None:
    token = jwt.encode(claims(**bad), key, algorithm="HS256")
    with time_machine.travel(T0, tick=False), pytest.raises(tokens.InvalidToken):
        tokens.verify(token, key)


def test_another_key_or_garbage_is_refused(key: bytes) -> None:
    with time_machine.travel(T0, tick=False):
        for token in (jwt.encode(claims(), b"k" * 32, algorithm="HS256"), "", "a.b.c", "x" * 5000):
            with pytest.raises(tokens.InvalidToken):
                tokens.verify(token, key)


def test_two_concurrent_requests_with_one_token_yield_one_download(committed_app: Flask) -> None:
    key = get_keyring(committed_app).derive(tokens.KEY_PURPOSE)
    maker = db.state(committed_app).sessionmaker
    now = dt.datetime.now(dt.UTC)
    with maker() as session:
        token = tokens.issue(session, key, resource=RESOURCE, user_id=5, now=now)
        session.commit()
    barrier = threading.Barrier(2)
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt() -> None:
        with maker() as session:
            barrier.wait()
            try:
                tokens.redeem(session, token, key, user_id=5, resource=RESOURCE, now=now)
                session.commit()
                result = "download"
            except tokens.TokenNotUsable:
                session.rollback()
                result = "refused"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["download", "refused"]
