"""The blind index of the identifiers each message carries, so "every message that mentions this subject" is a query.

Written when a message is stored (`index_message`, called by
`app.tickets.service.add_message`): the addresses of its sender, its To/Cc
lines and its texts, the phone numbers in its texts (E.164, found with
`phonenumbers`), the IBANs (`schwifty`) and its sender's normalised name.
Each is an HMAC under the controller's index key (app.crypto), so the table
holds no personal value; a message moved from triage to a controller is
indexed again under the new owner (`reindex_ticket`).

Names are matched on a normalised form: NFKC, case-folded, diacritics folded
("Zoë", "ZOE", "Zoe" alike), whitespace collapsed. A name written in free text
is not indexed (it cannot be told from other words): an erasure lists the
messages of tickets it does not own as "review" (app.deletion).
"""

from __future__ import annotations

import email.policy
import functools
import re
import unicodedata
from collections.abc import Iterable, Iterator
from email.parser import BytesHeaderParser
from email.utils import getaddresses

import phonenumbers
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException
from sqlalchemy import ForeignKey, Index, Insert, Integer, LargeBinary, String, delete, insert, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.addresses import mailbox
from app.blobs.store import iter_blob
from app.crypto.cipher import INDEX_BYTES, blind_index
from app.crypto.keys import cache_for, find_index_key, owner_of
from app.db import Base, intpk, table_of_model
from app.tickets.models import Message

KINDS = ("email", "phone", "iban", "name")
SCAN_CHARS = 200_000
# Regions tried for numbers written without a country code (the desk's controllers are European).
PHONE_REGIONS = ("DE", "GB", "FR", "NL", "AT", "CH")
_ADDRESS = re.compile(r"[^\s<>()\[\],;:\"']{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}")
_IBAN_CANDIDATE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
# The fewest decimal digits a valid number is written with (tests/tickets/test_identifiers.py derives it from the metadata):
# its national significant number's shortest possible length in PHONE_REGIONS (DE, AT: 4), or in any region with its
# country code (6). A valid number's national digits are all written digits (at VALID leniency an "x" is no digit).
MIN_PHONE_DIGITS = 4
# Decimal digits of any script, as phonenumbers' own pattern reads them; the search stops at the fourth.
_ENOUGH_DIGITS = re.compile(rf"\d(?:\D*\d){{{MIN_PHONE_DIGITS - 1}}}")


class MessageIdentifier(Base):
    """One identifier a message carries: its kind and its blind index under the message's key owner."""

    __tablename__ = "message_identifiers"
    __table_args__ = (Index("ix_message_identifiers_lookup", "key_owner", "digest"),)

    id: Mapped[intpk]
    message_id: Mapped[int] = mapped_column(ForeignKey("ticket_messages.id", ondelete="CASCADE"), index=True)
    key_owner: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))
    digest: Mapped[bytes] = mapped_column(LargeBinary(INDEX_BYTES))


def normalise_name(value: str) -> str:
    """A name as the index keys it: NFKC, diacritics folded, case-folded, whitespace collapsed ("Zoë  Ärger" -> "zoe arger")."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", value))
    folded = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join(folded.split())


def phones_in(text: str | None) -> Iterator[tuple[str, str]]:
    """Each phone number in `text` as (the text as written, E.164); numbers without a country code tried per PHONE_REGIONS."""
    text = (text or "")[:SCAN_CHARS]
    if not _ENOUGH_DIGITS.search(text):
        return  # too few digits (any script's) for a valid number, in any region
    seen: set[tuple[int, int]] = set()
    for region in PHONE_REGIONS:
        for match in _Matcher(text, region, leniency=phonenumbers.Leniency.VALID):
            if (match.start, match.end) in seen:
                continue
            seen.add((match.start, match.end))
            yield match.raw_string, phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)


class _Matcher(phonenumbers.PhoneNumberMatcher):
    """phonenumbers' matcher, with no parse of a candidate too short to be valid anywhere (days, hours): the same matches."""

    def _parse_and_verify(self, candidate: str, offset: int) -> phonenumbers.PhoneNumberMatch | None:
        # Each candidate (and inner group) is parsed in each region, the most of the matcher's time: "16", "02" and "10"
        # of a quoted "Nov 16, 2026 at 10:02" cannot be valid anywhere. A renamed hook is never called: only slower.
        if not _ENOUGH_DIGITS.search(candidate):
            return None
        return super()._parse_and_verify(candidate, offset)


def ibans_in(text: str | None) -> Iterator[tuple[str, str]]:
    """Each valid IBAN in `text` as (the text as written, compact form); candidates schwifty refuses are skipped."""
    for match in _IBAN_CANDIDATE.finditer((text or "")[:SCAN_CHARS].upper()):
        raw = (text or "")[match.start() : match.end()]
        try:
            yield raw, IBAN(raw).compact
        except (SchwiftyException, ValueError):
            continue


def name_pairs(text: str | None) -> set[str]:
    """Each pair of adjacent capitalised words in `text`, normalised: the candidates for a name written in free text.

    A subject's name is looked up by its own pairs ("Anna Maria Schmidt": "anna maria", "maria schmidt"), so
    the index narrows the messages to read; the rewriter then decides on the whole name.
    """
    found: set[str] = set()
    previous: str | None = None
    for word in (text or "")[:SCAN_CHARS].split():
        core = word.strip("\"'()[]<>,;:!?.")
        capital = bool(core) and core[0].isupper() and core[0].isalpha()
        if capital and previous is not None:
            found.add(normalise_name(f"{previous} {core}"))
        previous = core if capital and core == word.rstrip(".") and not word.endswith((",", ";", ":", "!", "?")) else None
    return found


def addresses_in(text: str | None) -> Iterator[str]:
    """Each email address in `text` (its mailbox form)."""
    for found in _ADDRESS.findall((text or "")[:SCAN_CHARS]):
        yield mailbox(found.strip("."))


def identifiers_of(texts: Iterable[str | None], addresses: Iterable[str | None], names: Iterable[str | None]) -> set[tuple[str, str]]:
    """Every (kind, normalised value) the message carries."""
    found: set[tuple[str, str]] = set()
    for address in addresses:
        if address:
            found.update(("email", a) for a in addresses_in(address))
    for text in dict.fromkeys(texts):  # a text given twice (the body as its reply part) is read once
        found.update(("email", a) for a in addresses_in(text))
        found.update(("phone", e164) for _, e164 in phones_in(text))
        found.update(("iban", compact) for _, compact in ibans_in(text))
        found.update(("name", pair) for pair in name_pairs(text))
    for name in names:
        found.update(("name", pair) for pair in name_pairs(name))
        if name and normalise_name(name):
            found.add(("name", normalise_name(name)))
    return found


def digest(index_key: bytes, kind: str, value: str) -> bytes:
    """The blind index of one normalised identifier (emails share the email blind index of tickets and senders)."""
    return blind_index(index_key, "email", value) if kind == "email" else blind_index(index_key, "text", f"{kind}:{value}")


def index_key_of(session: Session, key_owner: int) -> bytes | None:
    """The index key of a key owner (None: no keys yet, nothing to index)."""
    return find_index_key(session.connection(), cache_for(session), owner_of(key_owner))  # triage (0): its own key, as its fields


@functools.cache
def _insert() -> Insert:
    # A Core INSERT built once (an executemany of the rows): the ORM's bulk path and building the statement per
    # message cost more CPU than the rows.
    return insert(table_of_model(MessageIdentifier))


def index_message(session: Session, message: Message, *, recipients: Iterable[str] = (), new: bool = False) -> int:
    """Write the blind index of the identifiers `message` carries (its texts, sender, To/Cc); how many (flush only).

    The message's earlier index rows are replaced; `new=True` for a message inserted in this transaction,
    which has none (one statement fewer on every stored message).
    """
    found = digests_of(
        session, message.key_owner, [message.subject, message.body_text, message.reply_text], [message.sender_email, *recipients], [message.sender_name]
    )
    if found is None:
        return 0
    if not new:
        session.execute(delete(MessageIdentifier).where(MessageIdentifier.message_id == message.id))
    rows = [{"message_id": message.id, "key_owner": message.key_owner, "kind": k, "digest": d} for k, d in found]
    if rows:
        session.execute(_insert(), rows)
    return len(rows)


def digests_of(
    session: Session, key_owner: int, texts: Iterable[str | None], addresses: Iterable[str | None], names: Iterable[str | None]
) -> list[tuple[str, bytes]] | None:
    """The (kind, digest) rows of a message's index under its key owner's index key (None: the owner has no keys yet)."""
    key = index_key_of(session, key_owner)
    if key is None:
        return None
    return [(k, digest(key, k, v)) for k, v in sorted(identifiers_of(texts, addresses, names))]


def file_digests(session: Session, key_owner: int, filename: str | None, text: bytes | None) -> list[tuple[str, bytes]] | None:
    """The (kind, digest) rows of what a file carries (its name; a small text file's contents) under the key owner's
    index key, in order (None: the owner has no keys yet)."""
    key = index_key_of(session, key_owner)
    if key is None:
        return None
    body = text.decode("utf-8", "replace") if text is not None and len(text) <= SCAN_CHARS else None
    return [(k, digest(key, k, v)) for k, v in sorted(identifiers_of([filename, body], [], []))]


def index_file(session: Session, message: Message, filename: str | None, text: bytes | None = None) -> int:
    """Add what a file of `message` carries (its name; a small text file's contents) to the message's index; how many (flush only)."""
    found = file_digests(session, message.key_owner, filename, text)
    if found is None:
        return 0
    known = set(session.scalars(select(MessageIdentifier.digest).where(MessageIdentifier.message_id == message.id)))
    rows = [{"message_id": message.id, "key_owner": message.key_owner, "kind": k, "digest": d} for k, d in found if d not in known]
    if rows:
        session.execute(_insert(), rows)
    return len(rows)


def index_unindexed(session: Session, *, after: int = 0, limit: int = 200) -> tuple[int, int]:
    """Index the next `limit` messages after id `after` that have no index yet (stored before migration 0017).

    Their To/Cc lines are read back from the raw original when it is kept. Returns (last id looked at, messages
    indexed); a last id of `after` means nothing is left. Flush only: one batch of the batch-job shape.
    """
    indexed = select(MessageIdentifier.message_id).where(MessageIdentifier.message_id == Message.id).exists()
    rows = list(session.scalars(select(Message).where(Message.id > after, ~indexed).order_by(Message.id).limit(limit)))
    for message in rows:
        index_message(session, message, recipients=_recipients_of(session, message.raw_blob_id))
    return (rows[-1].id if rows else after), len(rows)


def _recipients_of(session: Session, raw_blob_id: int | None) -> list[str]:
    if raw_blob_id is None:
        return []
    head = b"".join(iter_blob(session, raw_blob_id)).split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    parsed = BytesHeaderParser(policy=email.policy.compat32).parsebytes(head)
    return [address for _, address in getaddresses([str(v) for name in ("To", "Cc") for v in parsed.get_all(name, [])]) if address]


def messages_mentioning(session: Session, key_owner: int, digests: Iterable[bytes]) -> list[int]:
    """The messages of a key owner whose index holds any of `digests` (one indexed query)."""
    wanted = sorted(set(digests))
    if not wanted:
        return []
    stmt = select(MessageIdentifier.message_id).where(MessageIdentifier.key_owner == key_owner, MessageIdentifier.digest.in_(wanted)).distinct()
    return sorted(session.scalars(stmt))
