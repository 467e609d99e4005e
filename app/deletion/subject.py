"""A subject's plan: everything of theirs and everything that mentions them, found by blind index, and what they gave.

The subject is known by every address of theirs (the request's and any other
one named), their name, and what they gave in their own messages: phone
numbers (E.164), IBANs and the lines that carry them or a postal address (a
line of their own text with a digit in it, such as "Musterstraße 12" or
"10115 Berlin"). Those are learnt from the messages they wrote (decrypted:
few) and from texts the authority adds (the request), kept encrypted in the
run's parameters, and looked up in the identifier index of every message
(`app.tickets.identifiers`) so the messages of other people that carry any of
them are found without decrypting the rest.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from sqlalchemy import select

from app.crypto.cipher import CryptoError
from app.deletion.scope import digests, message_ids_by, ticket_ids_of
from app.deletion.stores import RunContext
from app.tickets.identifiers import digest, ibans_in, index_key_of, messages_mentioning, name_pairs, normalise_name, phones_in
from app.tickets.models import Message

MIN_LINE = 6
MAX_LINES = 200


def _lines(text: str) -> list[str]:
    """The lines of the subject's own text that carry a number (an address, a phone, an account): quoted elsewhere, they go too."""
    found = []
    for raw in text.splitlines():
        if raw.lstrip().startswith(">"):
            continue  # quoted: someone else's words
        line = raw.strip(" \t-*|")
        if len(line) >= MIN_LINE and any(c.isdigit() for c in line) and any(c.isalpha() for c in line):
            found.append(line)
    return found


def learn(ctx: RunContext, texts: Iterable[str | None], names: Iterable[str | None] = ()) -> None:
    """Add what the subject gave in `texts` (phones, IBANs, lines) and their `names` to the run's parameters."""
    params = ctx.params
    phones, ibans = set(params.get("phones") or []), set(params.get("ibans") or [])
    terms: dict[str, str] = dict(params.get("replace") or {})
    lines: list[str] = list(params.get("lines") or [])
    for text in texts:
        if not text:
            continue
        phones.update(e164 for _, e164 in phones_in(text))
        ibans.update(compact for _, compact in ibans_in(text))
        for line in _lines(text):
            if line not in lines and len(lines) < MAX_LINES:
                lines.append(line)
    for line in lines:
        terms.setdefault(line, terms.get(line, "[erased]"))
    params["phones"], params["ibans"], params["lines"] = sorted(phones), sorted(ibans), lines
    if ctx.erasing:
        params["replace"] = terms
    known = [n for n in params.get("names") or [] if n]
    for name in names:
        if name and normalise_name(name) not in {normalise_name(str(k)) for k in known}:
            known.append(name)
    params["names"] = known
    ctx.__dict__.pop("rewriter", None)  # the cached rewriter is built again with what was learnt


def plan_subject(ctx: RunContext) -> tuple[list[int], list[int]]:
    """The subject's own messages (by sender index, any ticket) and the messages of others that carry their identifiers."""
    session, controller_id = ctx.session, ctx.run.controller_id
    assert controller_id is not None
    emails = ctx.params.get("emails") or []
    found = subject_digests(ctx)
    own = message_ids_by(session, found, controller_id, [])
    texts: list[str | None] = []
    names: list[str | None] = []
    for message in session.scalars(select(Message).where(Message.id.in_(own or [0])).order_by(Message.id)):
        try:
            texts += [message.body_text, message.reply_text]
            names.append(message.sender_name)
        except CryptoError:
            ctx.report.fail("message", message.id, "unreadable")
    learn(ctx, texts, names)
    key = index_key_of(session, controller_id)
    wanted = list(found)
    if key is not None:
        params = ctx.params
        wanted += [digest(key, "email", e) for e in emails]
        wanted += [digest(key, "phone", p) for p in params.get("phones") or []]
        wanted += [digest(key, "iban", i) for i in params.get("ibans") or []]
        known_names = [str(n) for n in params.get("names") or [] if n]
        wanted += [digest(key, "name", normalise_name(n)) for n in known_names]
        wanted += [digest(key, "name", pair) for n in known_names for pair in name_pairs(n)]
    params = ctx.params
    params["digests"] = sorted({d.hex() for d in wanted})
    ctx.run.params = json.dumps(params)
    return own, messages_mentioning(session, controller_id, wanted)


def subject_digests(ctx: RunContext) -> list[bytes]:
    """The controller's blind index of every address of the subject (given, or known only by index)."""
    assert ctx.run.controller_id is not None
    known = [bytes.fromhex(h) for h in ctx.params.get("email_digests") or []]
    return sorted({*digests(ctx.session, ctx.params.get("emails") or [], ctx.run.controller_id), *known})


def subject_tickets(ctx: RunContext) -> list[int]:
    """The tickets the subject opened under any of their addresses."""
    assert ctx.run.controller_id is not None
    return ticket_ids_of(ctx.session, subject_digests(ctx), ctx.run.controller_id)
