"""The master keyring: one secret per master key version, keys derived with HKDF-SHA256.

`MASTER_SECRET` is the secret of the current version `MASTER_KEY_VERSION`; the
secrets of older versions still needed to unwrap data keys are
`MASTER_SECRET_V<n>`. Each version is its own secret, so a leaked old secret
says nothing about the current one (DESIGN.md, "Pitfalls"). No secret and no
derived key is ever written to the database or a log.

Purposes keep derived keys apart: `derive("key-wrap")` wraps data keys,
`derive("blind-index")`, `derive("token")`, `derive("audit-checkpoint")` etc.
each get their own key from the same version's secret (HKDF `info` label).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.exceptions import DeskError
from config.settings import ConfigError

if TYPE_CHECKING:
    from flask import Flask

MIN_SECRET_BYTES = 32
KEY_BYTES = 32
# A fixed, public salt: HKDF's security here rests on the secrets' entropy;
# the salt only separates this application's keys from any other use of them.
HKDF_SALT = b"dsr-desk/hkdf/2026"
WRAP = "key-wrap"
BLIND_INDEX = "blind-index"
TOKEN = "token"
EXTENSION_KEY = "keyring"


class KeyringError(ConfigError, DeskError):
    """The master secrets are missing or malformed; the message names the variable."""


class UnknownKeyVersion(KeyringError):
    """A master key version is needed but its secret is not configured."""


def secret_variable(version: int, current_version: int) -> str:
    """The environment variable that holds a version's secret."""
    return "MASTER_SECRET" if version == current_version else f"MASTER_SECRET_V{version}"


class Keyring:
    """Master secrets by version and the keys derived from them (cached)."""

    def __init__(self, current_version: int, secrets: Mapping[int, str | bytes]) -> None:
        if current_version < 1:
            raise KeyringError("MASTER_KEY_VERSION must be a positive whole number")
        if current_version not in secrets:
            raise KeyringError("MASTER_SECRET is required")
        seen: dict[bytes, int] = {}
        self._secrets: dict[int, bytes] = {}
        for version, raw in sorted(secrets.items()):
            name = secret_variable(version, current_version)
            if version > current_version:
                raise KeyringError(f"{name} is newer than MASTER_KEY_VERSION={current_version}: raise MASTER_KEY_VERSION or remove {name}")
            if version < 1:
                raise KeyringError(f"{name}: master key versions start at 1")
            secret = raw.encode() if isinstance(raw, str) else bytes(raw)
            if not secret:
                raise KeyringError(f"{name} is empty")
            if len(secret) < MIN_SECRET_BYTES:
                raise KeyringError(f"{name} is shorter than {MIN_SECRET_BYTES} bytes")
            if secret in seen:
                other = secret_variable(seen[secret], current_version)
                raise KeyringError(f"{name} repeats {other}: each master key version needs its own secret")
            seen[secret] = version
            self._secrets[version] = secret
        self.current_version = current_version
        self._cache: dict[tuple[str, int], bytes] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Keyring:
        """The keyring of an app config (MASTER_SECRET, MASTER_KEY_VERSION, MASTER_SECRETS_OLD)."""
        current = config.get("MASTER_KEY_VERSION") or 1
        secret = config.get("MASTER_SECRET")
        if not secret:
            raise KeyringError("MASTER_SECRET is required")
        old: Mapping[int, str] = config.get("MASTER_SECRETS_OLD") or {}
        if current in old:
            raise KeyringError(f"MASTER_SECRET_V{current} names the current version: the current secret is MASTER_SECRET")
        return cls(int(current), {**{int(v): s for v, s in old.items()}, int(current): secret})

    @property
    def versions(self) -> tuple[int, ...]:
        """Every configured master key version, oldest first."""
        return tuple(sorted(self._secrets))

    def has_version(self, version: int) -> bool:
        """Whether the secret of `version` is configured."""
        return version in self._secrets

    def variable(self, version: int) -> str:
        """The environment variable holding `version`'s secret."""
        return secret_variable(version, self.current_version)

    def derive(self, purpose: str, version: int | None = None) -> bytes:
        """A 32-byte key for `purpose` from the secret of `version` (default: current)."""
        v = self.current_version if version is None else version
        key = self._cache.get((purpose, v))
        if key is not None:
            return key
        secret = self._secrets.get(v)
        if secret is None:
            raise UnknownKeyVersion(f"master key version {v} is needed but {self.variable(v)} is not set")
        info = b"dsr-desk/" + purpose.encode() + b"/v" + str(v).encode()
        key = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=HKDF_SALT, info=info).derive(secret)
        with self._lock:
            self._cache[(purpose, v)] = key
        return key

    def __repr__(self) -> str:  # never show secrets
        return f"Keyring(current_version={self.current_version}, versions={self.versions})"


# Sessions find the keyring through their engine, so services never need
# `current_app` and two apps in one process (tests) keep their own keyrings.
# The keyring is built from the config and bound by create_app
# (app.crypto.startup.install_keyring), or by a script with bind_engine.
_BY_ENGINE: weakref.WeakKeyDictionary[Engine, Keyring] = weakref.WeakKeyDictionary()


def bind_engine(engine: Engine, keyring: Keyring) -> None:
    """Make sessions on `engine` encrypt and decrypt with `keyring` (create_app, scripts and benchmarks)."""
    _BY_ENGINE[engine] = keyring


def keyring_for(session: Session) -> Keyring:
    """The keyring of a session: session.info["keyring"], else its engine's; KeyringError when neither is set."""
    explicit = session.info.get(EXTENSION_KEY)
    if explicit is not None:
        return explicit
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    keyring = _BY_ENGINE.get(engine)
    if keyring is not None:
        return keyring
    raise KeyringError("no keyring for this database session: create the app (MASTER_SECRET) or call bind_engine")


def get_keyring(app: Flask) -> Keyring:
    """The keyring create_app installed on `app` (its extensions, key "keyring")."""
    keyring: Keyring = app.extensions[EXTENSION_KEY]
    return keyring
