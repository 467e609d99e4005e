"""Encrypted fields and blind indexes: THE way to store a sensitive value on a model.

Usage (a table with personal data of a controller, and a platform secret)::

    from app.crypto.fields import PLATFORM, EncryptedField, EncryptedRow, blind_index_column, encrypted_column

    class Ticket(EncryptedRow, Base):                     # EncryptedRow adds `row_uid`
        __tablename__ = "tickets"
        id: Mapped[intpk]                                  # an integer `id` key (rotation walks id ranges)
        controller_id: Mapped[int] = mapped_column(ForeignKey("controllers.id"))
        requester_ct: Mapped[bytes] = encrypted_column()   # ciphertext (nullable=True for optional fields)
        requester_bidx: Mapped[bytes | None] = blind_index_column()
        requester = EncryptedField("requester_ct", owner="controller_id", blind_index="requester_bidx", normalise="email")

    class StaffUser(EncryptedRow, Base):
        totp_secret_ct: Mapped[bytes | None] = encrypted_column(nullable=True)
        totp_secret = EncryptedField("totp_secret_ct", owner=PLATFORM)
        # EncryptedBytes(...) for binary values (attachments)

    ticket = Ticket(controller_id=3, requester="Jane@Example.com")   # set like a plain attribute
    session.add(ticket); session.flush()                              # encrypted here, at flush
    ticket.requester                                                  # -> "Jane@Example.com" (decrypts lazily)
    session.scalars(select(Ticket).where(Ticket.requester.matches(session, "jane@example.com ", controller_id=3)))

How it works: the plaintext set on the attribute is kept on the instance and
encrypted in the flush (mapper `before_insert`/`before_update`), when the
owner (`controller_id`, also when set through a relationship) is known. The
key is the owner's active data key (created on first use; see keys.py). The
row identity bound into the associated data is `row_uid`, a random UUID the
client assigns before the INSERT, because an autoincrement id does not exist
yet when the value is encrypted; it never changes. The owner of a row is fixed
once a value is encrypted (moving a row to another controller means writing
the value again). Each `EncryptedField` registers itself in `FIELDS`, which is
how `keys rotate --reencrypt` finds every encrypted column, including ones
added later. Reads outside a session work only for values already read or set.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import cached_property
from types import SimpleNamespace
from typing import Any, Generic, TypeVar, overload

from sqlalchemy import LargeBinary, String, and_, event, false
from sqlalchemy.orm import Mapped, Mapper, Session, SessionTransaction, mapped_column, object_session
from sqlalchemy.orm.attributes import flag_dirty
from sqlalchemy.sql.elements import ColumnElement

from app.crypto.cipher import INDEX_BYTES, NORMALISERS, CryptoError, KeyShredded, blind_index, blind_indexes, decrypt_field, encrypt_field, key_id_of
from app.crypto.keys import (
    PLATFORM,
    active_key,
    cache_for,
    find_index_key,
    forget_active_keys,
    forget_keys,
    index_keys_of_controllers,
    load_key,
    owner_of,
)
from app.crypto.shown import Unreadable, placeholder, showing_placeholders
from app.db import Base, table_of_model

__all__ = [
    "FIELDS",
    "PLATFORM",
    "EncryptedBytes",
    "EncryptedField",
    "EncryptedRow",
    "blind_index_column",
    "encrypted_column",
    "new_row_uid",
]

T = TypeVar("T", str, bytes)
_PENDING = "_dsr_desk_pending"  # plaintext set but not yet encrypted, by field name
_PLAIN = "_dsr_desk_plain"  # (ciphertext, plaintext) last seen, by field name


def new_row_uid() -> str:
    """A random row identity, known before the INSERT."""
    return uuid.uuid4().hex


class EncryptedRow:
    """Mixin for tables with encrypted fields: the row identity bound into every value's associated data."""

    row_uid: Mapped[str] = mapped_column(String(32), unique=True, default=new_row_uid)


def encrypted_column(*, nullable: bool = False) -> Any:
    """The ciphertext column of an EncryptedField."""
    return mapped_column(LargeBinary, nullable=nullable)


def blind_index_column(*, unique: bool = False) -> Any:
    """The blind-index column of an EncryptedField (indexed, so a lookup is one index scan; `unique` for a unique index)."""
    return mapped_column(LargeBinary(INDEX_BYTES), index=True, unique=unique or None, nullable=True)


@dataclass(frozen=True)
class FieldSpec:
    """One encrypted column, as rotation and status see it."""

    model: type
    name: str
    column: str
    owner: str
    blind_index: str | None
    normalise: str | None
    binary: bool = False
    # The column name bound into the associated data, when it differs from `column` (see EncryptedField's `bound_as`).
    bound_as: str | None = None

    @property
    def table(self) -> str:
        """The table holding the ciphertext."""
        return table_of_model(self.model).name

    @property
    def aad_column(self) -> str:
        """The column name each value's associated data names (its original name, for a renamed column)."""
        return self.bound_as or self.column


FIELDS: list[FieldSpec] = []
_BY_CLASS: dict[type, list[FieldSpec]] = {}


def _specs(cls: type) -> list[FieldSpec]:
    found = _BY_CLASS.get(cls)
    if found is None:
        found = [s for klass in cls.__mro__ for s in FIELDS if s.model is klass]
        _BY_CLASS[cls] = found
    return found


class _Encrypted(Generic[T]):
    def __init__(self, column: str, *, owner: str, blind_index: str | None = None, normalise: str | None = None, bound_as: str | None = None) -> None:
        # bound_as: a column renamed after values were written keeps its values' binding to the original name
        # (a migration cannot re-encrypt: it has no keys), so values are bound to `bound_as` instead of `column`.
        if (blind_index is None) != (normalise is None):
            raise TypeError("blind_index and normalise go together")
        if normalise is not None and normalise not in NORMALISERS:
            raise TypeError(f"normalise must be one of {sorted(NORMALISERS)}")
        self.column = column
        self.owner = owner
        self.blind_index = blind_index
        self.normalise = normalise
        self.bound_as = bound_as
        self.name = ""
        self.model: type | None = None

    def __set_name__(self, cls: type, name: str) -> None:
        self.name = name
        self.model = cls
        FIELDS.append(FieldSpec(cls, name, self.column, self.owner, self.blind_index, self.normalise, isinstance(self, EncryptedBytes), self.bound_as))
        _BY_CLASS.clear()

    def _encode(self, value: T) -> bytes:
        raise NotImplementedError

    def _decode(self, raw: bytes) -> T:
        raise NotImplementedError

    def _placeholder(self) -> T | None:
        return None  # binary values (files, key material) have no placeholder: reading one always raises

    @overload
    def __get__(self, instance: None, cls: type) -> _Encrypted[T]: ...
    @overload
    def __get__(self, instance: object, cls: type) -> T | None: ...
    def __get__(self, instance: object | None, cls: type) -> _Encrypted[T] | T | None:
        if instance is None:
            return self
        pending: dict[str, Any] = instance.__dict__.get(_PENDING) or {}
        if self.name in pending:
            return pending[self.name]
        blob: bytes | None = getattr(instance, self.column)
        if blob is None:
            return None
        seen = (instance.__dict__.get(_PLAIN) or {}).get(self.name)
        if seen is not None and seen[0] == blob:
            return seen[1]
        session = object_session(instance)
        if session is None:
            raise CryptoError(f"{type(instance).__name__}.{self.name} can only be decrypted while its row is in a session")
        assert isinstance(instance, EncryptedRow), f"{type(instance).__name__} holds encrypted fields without EncryptedRow"
        value = self.decrypt(session, blob, row_uid=instance.row_uid)
        if not isinstance(value, Unreadable):  # a page's placeholder is never remembered as the value
            instance.__dict__.setdefault(_PLAIN, {})[self.name] = (blob, value)
        return value

    def decrypt(self, session: Session, blob: bytes, *, row_uid: str) -> T:
        """The plaintext of this column's ciphertext from row `row_uid`, also when a query selected columns, not entities.

        KeyShredded when its key was destroyed; a text field reads as the placeholder instead while a page is
        built (app.crypto.shown). Any other failure (an altered or moved value) raises DecryptionError."""
        cache = cache_for(session)
        key_id = key_id_of(blob, where=self._where)
        try:
            key = cache.by_id.get(key_id) or load_key(session.connection(), cache, key_id)  # no connection call on a cache hit
        except KeyShredded:
            shown = self._placeholder() if showing_placeholders() else None
            if shown is None:
                raise
            return shown
        return self._decode(decrypt_field(key.aead, blob, table=self.table_name, column=self.bound_as or self.column, row_uid=row_uid))

    def __set__(self, instance: object, value: T | None) -> None:
        if value is None:
            instance.__dict__.get(_PENDING, {}).pop(self.name, None)
            setattr(instance, self.column, None)
            if self.blind_index:
                setattr(instance, self.blind_index, None)
            return
        self._encode(value)  # type errors now, not at flush
        instance.__dict__.setdefault(_PENDING, {})[self.name] = value
        flag_dirty(instance)  # so the flush visits the row even if nothing else changed

    @cached_property
    def table_name(self) -> str:
        """The table of the ciphertext column (fixed once the model is mapped; read per decrypted value)."""
        assert self.model is not None  # set by __set_name__ when the model class is made
        return table_of_model(self.model).name

    @cached_property
    def _where(self) -> str:
        return f"{self.table_name}.{self.column}"

    def encrypt_for_insert(self, session: Session, value: T, *, owner_id: int | None, row_uid: str) -> bytes:
        """The ciphertext a flush would write for `value` in the new row `row_uid` (owner `owner_id`: a controller, or
        None for the platform), for a Core INSERT; under the owner's active key, locked as a flush locks it.
        Blind indexes are not computed: only for columns without one. Raises TypeError for a wrong type or an indexed column."""
        if self.blind_index is not None:
            raise TypeError(f"{self.name} has a blind index: write it through the ORM")
        if owner_id is None and self.owner != PLATFORM:
            raise TypeError(f"{self.name} is per owner: pass owner_id")
        owner = PLATFORM if self.owner == PLATFORM else owner_of(owner_id)
        key = active_key(session.connection(), cache_for(session), owner)
        return encrypt_field(key.aead, key.id, self._encode(value), table=self.table_name, column=self.bound_as or self.column, row_uid=row_uid)

    def index_value(self, session: Session, value: str, *, controller_id: int | None = None) -> bytes | None:
        """The blind index of `value` for this owner, or None when the owner has no keys (nothing can match)."""
        if self.normalise is None:
            raise TypeError(f"{self.name} has no blind index")
        owner = PLATFORM if self.owner == PLATFORM else owner_of(controller_id)
        if owner == PLATFORM and self.owner != PLATFORM:
            raise TypeError(f"{self.name} is per controller: pass controller_id")
        index_key = find_index_key(session.connection(), cache_for(session), owner)
        return None if index_key is None else blind_index(index_key, self.normalise, value)

    def index_values_of_controllers(self, session: Session, value: str, controller_ids: Any) -> dict[int, bytes]:
        """The blind index of `value` under each controller of `controller_ids` (a list or a SELECT of ids): one query, any count."""
        if self.normalise is None or self.owner == PLATFORM:
            raise TypeError(f"{self.name} has no per-controller blind index")
        return blind_indexes(index_keys_of_controllers(session, controller_ids), self.normalise, value)

    def matches(self, session: Session, value: str, *, controller_id: int | None = None) -> ColumnElement[bool]:
        """A WHERE clause: rows whose value equals `value` (after normalising), via the blind index."""
        digest = self.index_value(session, value, controller_id=controller_id)
        if digest is None:
            return false()
        column = getattr(self.model, self.blind_index or "")
        if self.owner == PLATFORM:
            return column == digest
        return and_(column == digest, getattr(self.model, self.owner) == controller_id)


class EncryptedField(_Encrypted[str]):
    """An encrypted text field (UTF-8), optionally with a blind index."""

    def _encode(self, value: str) -> bytes:
        if not isinstance(value, str):
            raise TypeError(f"{self.name} takes text")
        return value.encode()

    def _decode(self, raw: bytes) -> str:
        return raw.decode()

    def _placeholder(self) -> str:
        return placeholder()


class EncryptedBytes(_Encrypted[bytes]):
    """An encrypted binary field (attachments, key material)."""

    def _encode(self, value: bytes) -> bytes:
        if not isinstance(value, bytes | bytearray):
            raise TypeError(f"{self.name} takes bytes")
        return bytes(value)

    def _decode(self, raw: bytes) -> bytes:
        return raw


def _owner_label(spec: FieldSpec, target: Any) -> str:
    if spec.owner == PLATFORM:
        return PLATFORM
    controller_id = getattr(target, spec.owner)
    if controller_id is None:
        raise CryptoError(f"{type(target).__name__}.{spec.name}: {spec.owner} must be set before the value can be encrypted")
    return owner_of(int(controller_id))


@event.listens_for(Base, "before_insert", propagate=True)
@event.listens_for(Base, "before_update", propagate=True)
def _encrypt_pending(_mapper: Mapper[Any], connection: Any, target: Any) -> None:
    specs = _specs(type(target))
    if not specs:
        return
    if target.row_uid is None:
        target.row_uid = new_row_uid()
    pending: dict[str, Any] | None = target.__dict__.get(_PENDING)
    if not pending:
        return
    session = object_session(target)
    assert session is not None  # a flushed row is always in a session
    cache = cache_for(session)
    for spec in specs:
        if spec.name not in pending:
            continue
        value = pending[spec.name]
        blob, index = _encrypt_value(connection, cache, spec, target, value)
        setattr(target, spec.column, blob)
        if index is not None:
            setattr(target, spec.blind_index or "", index)
        target.__dict__.setdefault(_PLAIN, {})[spec.name] = (blob, value)
        del pending[spec.name]


def _encrypt_value(connection: Any, cache: Any, spec: FieldSpec, target: Any, value: Any) -> tuple[bytes, bytes | None]:
    # What a flush writes for one value of `target` (its row_uid and owner column set): ciphertext, blind index or None.
    key = active_key(connection, cache, _owner_label(spec, target))
    field: _Encrypted[Any] = getattr(spec.model, spec.name)
    blob = encrypt_field(key.aead, key.id, field._encode(value), table=spec.table, column=spec.aad_column, row_uid=target.row_uid)
    return blob, (blind_index(key.index_key, spec.normalise, value) if spec.blind_index and spec.normalise else None)


def encrypt_new_row(session: Session, model: type, plain: dict[str, Any], *, owner: int | None, row_uid: str) -> dict[str, Any]:
    """The columns a flush would write for the encrypted fields `plain` (by field name; None: no value) of the new row
    `row_uid` of `model` whose owner column holds `owner`, for a Core INSERT: the same ciphertexts (bound to table, column
    and row, under the owner's active key, locked as a flush locks it) and blind indexes. `remember_plain` afterwards."""
    columns: dict[str, Any] = {}
    conn, cache = session.connection(), cache_for(session)  # once a row, not once a value
    for spec in _specs(model):
        if spec.name in plain:
            value = plain[spec.name]
            target = SimpleNamespace(row_uid=row_uid, **({} if spec.owner == PLATFORM else {spec.owner: owner}))  # as _owner_label reads a row
            blob, index = _encrypt_value(conn, cache, spec, target, value) if value is not None else (None, None)
            columns[spec.column] = blob
            if spec.blind_index:
                columns[spec.blind_index] = index
    return columns


def remember_plain(instance: object, plain: dict[str, Any]) -> None:
    """After a Core INSERT of `instance`'s row with `encrypt_new_row`: its fields read their plaintexts without decrypting."""
    for spec in _specs(type(instance)):
        blob = instance.__dict__.get(spec.column)
        if spec.name in plain and plain[spec.name] is not None and blob is not None:
            instance.__dict__.setdefault(_PLAIN, {})[spec.name] = (blob, plain[spec.name])


@event.listens_for(Session, "after_transaction_end")
def _forget_keys(session: Session, transaction: SessionTransaction) -> None:
    # Unwrapped keys live no longer than a transaction, so a key shredded by
    # another process is unusable here from the next transaction on.
    if transaction.parent is None:
        forget_keys(session)
    elif transaction.nested:
        # A savepoint rolled back released the FOR SHARE locks taken inside it: ask for active keys again.
        forget_active_keys(session)
