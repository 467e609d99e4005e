"""Single-use download tokens (WECO §9.1(e)): HS256 JWTs valid 60 seconds, each `jti` consumed once in the database.

RFC 8725 habits: the algorithm is pinned (a token whose header names any
other algorithm, `none` included, is refused before its signature is even
looked at); `exp`, `iat`, `jti`, `sub`, `aud` and the resource claim `res` are
required; the key is derived for this purpose only
(`get_keyring(app).derive("download-token")`) and passed in, so this module has
no Flask in it. The `jti` is registered when the token is issued and consumed
by one conditional UPDATE, so two concurrent requests with the same token
yield one download, on SQLite and Postgres alike. Tokens travel in a POST
form field only: never in a URL, a log line or a Referer.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

import jwt
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.exceptions import Refused
from app.subject_data.models import DownloadToken

ALGORITHM = "HS256"
TTL = dt.timedelta(seconds=60)
AUDIENCE = "dsr-desk/download"
KEY_PURPOSE = "download-token"
REQUIRED = ["exp", "iat", "jti", "sub", "aud", "res"]
MAX_TOKEN_CHARS = 2048


class TokenError(Refused):
    """Base of the download token errors; the message is safe to show (never the token)."""


class InvalidToken(TokenError):
    """Malformed, wrongly signed, of another algorithm, expired, or missing a claim."""


class TokenNotUsable(TokenError):
    """Already used, expired in the database, or issued to someone else or for another file."""


@dataclass(frozen=True)
class Claims:
    """The verified claims of a token."""

    jti: str
    user_id: int
    resource: str


def issue(session: Session, key: bytes, *, resource: str, user_id: int, now: dt.datetime) -> str:
    """Register a new `jti` and return the signed token for one download of `resource` by `user_id` (flush only)."""
    jti = secrets.token_urlsafe(24)
    expires = now + TTL
    session.add(DownloadToken(jti=jti, resource=resource, user_id=user_id, issued_at=now, expires_at=expires))
    session.flush()
    claims = {"jti": jti, "sub": str(user_id), "res": resource, "aud": AUDIENCE, "iat": int(now.timestamp()), "exp": int(expires.timestamp())}
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def verify(token: str, key: bytes) -> Claims:
    """Check the signature, the pinned algorithm, the audience, expiry and that every claim is there; InvalidToken if not."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise InvalidToken("the download link is malformed")
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("the download link is not valid")
        data = jwt.decode(token, key, algorithms=[ALGORITHM], audience=AUDIENCE, options={"require": REQUIRED, "strict_aud": True})
    except jwt.ExpiredSignatureError:
        raise InvalidToken("the download link has expired; ask for a new one") from None
    except jwt.PyJWTError:
        raise InvalidToken("the download link is not valid") from None
    sub, jti, res = data.get("sub"), data.get("jti"), data.get("res")
    if not (isinstance(sub, str) and sub.isdigit() and isinstance(jti, str) and isinstance(res, str)):
        raise InvalidToken("the download link is not valid")
    return Claims(jti=jti, user_id=int(sub), resource=res)


def consume(session: Session, claims: Claims, *, user_id: int, resource: str, now: dt.datetime) -> None:
    """Mark the `jti` used with one conditional UPDATE (the caller commits before serving the file); TokenNotUsable if it was not ours to use."""
    if claims.user_id != user_id or claims.resource != resource:
        raise TokenNotUsable("this download link was issued to someone else or for another file")
    result = session.execute(
        update(DownloadToken)
        .where(
            DownloadToken.jti == claims.jti,
            DownloadToken.used_at.is_(None),
            DownloadToken.expires_at > now,
            DownloadToken.user_id == user_id,
            DownloadToken.resource == resource,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        raise TokenNotUsable("this download link has already been used or has expired")


def redeem(session: Session, token: str, key: bytes, *, user_id: int, resource: str, now: dt.datetime) -> Claims:
    """verify + consume: the one call a download view makes."""
    claims = verify(token, key)
    consume(session, claims, user_id=user_id, resource=resource, now=now)
    return claims
