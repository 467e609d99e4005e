"""Text rewriting for erasure and rectification: every occurrence of the subject's identifiers.

Terms (addresses, account numbers, the lines of a postal address...) match
case-insensitively; names also match in any Unicode normalisation form, with
diacritics folded ("Zoë", "Zoe", "ZOË", a decomposed "Zoë" alike); phone
numbers match however they are written (compared in E.164, found with
`phonenumbers`), IBANs with or without spaces (`schwifty`).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Collection, Mapping

from app.addresses import InvalidAddress, normalise_email
from app.tickets.identifiers import ibans_in, normalise_name, phones_in

ERASED = "[erased]"
MIN_TERM = 3  # shorter terms would redact ordinary words


def _fold(char: str) -> str:
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", char))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


class Rewriter:
    """Replaces the subject's identifiers in a text; `contains(data)` says whether raw bytes mention one.

    `replacements` maps each term to what it becomes; `names` match folded (to the replacement of the first
    name term, else "[erased]"); `phones` (E.164) and `ibans` (compact) match in any written form.
    """

    def __init__(self, replacements: Mapping[str, str], *, names: Collection[str] = (), phones: Collection[str] = (), ibans: Collection[str] = ()) -> None:
        terms = {t.strip(): r for t, r in replacements.items() if t and len(t.strip()) >= MIN_TERM}
        self._by_lower = {t.casefold(): r for t, r in terms.items()}
        ordered = sorted(terms, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(t) for t in ordered), re.IGNORECASE) if ordered else None
        self.emails = {_email(t) for t in terms if "@" in t} - {None}
        folded = {normalise_name(n) for n in names if n and len(normalise_name(n)) >= MIN_TERM}
        self._names = sorted(folded, key=len, reverse=True)
        self._name_to = next((r for t, r in terms.items() if normalise_name(t) in folded), ERASED)
        self.phones, self.ibans = set(phones), set(ibans)

    def __call__(self, text: str | None) -> str | None:
        if text is None:
            return None
        if self._pattern is not None:
            text = self._pattern.sub(lambda m: self._by_lower.get(m.group(0).casefold(), ERASED), text)
        spans = [*self._name_spans(text), *self._number_spans(text)]
        for start, end in sorted(_merge(spans), reverse=True):
            text = text[:start] + (self._name_to if self._is_name(text[start:end]) else ERASED) + text[end:]
        return text

    def _is_name(self, piece: str) -> bool:
        return normalise_name(piece) in self._names

    def _name_spans(self, text: str) -> list[tuple[int, int]]:
        """Where a name occurs in `text` once both are folded (positions in the original text)."""
        if not self._names:
            return []
        folded, origin = [], []
        for i, char in enumerate(text):
            piece = _fold(char)
            folded.append(piece)
            origin += [i] * len(piece)
        flat = "".join(folded)
        squeezed = re.sub(r"\s", " ", flat)
        spans = []
        for name in self._names:
            for m in re.finditer(r"(?<!\w)" + r"\s+".join(re.escape(p) for p in name.split()) + r"(?!\w)", squeezed):
                start, end = origin[m.start()], origin[m.end() - 1] + 1
                while end < len(text) and unicodedata.combining(text[end]):
                    end += 1
                spans.append((start, end))
        return spans

    def _number_spans(self, text: str) -> list[tuple[int, int]]:
        spans = []
        if self.phones:
            spans += [_span(text, raw) for raw, e164 in phones_in(text) if e164 in self.phones]
        if self.ibans:
            spans += [_span(text, raw) for raw, compact in ibans_in(text) if compact in self.ibans]
        return [s for s in spans if s is not None]

    def changes(self, text: str | None) -> bool:
        """Whether rewriting would change `text`."""
        return self(text) != text

    def contains(self, data: bytes) -> bool:
        """Whether raw bytes (a quarantined message, a file) mention an identifier."""
        return self.changes(data.decode("utf-8", "replace"))

    def is_subject_email(self, value: str | None) -> bool:
        """Whether an address is one of the subject's (normalised)."""
        return bool(value) and _email(value or "") in self.emails


def _span(text: str, raw: str) -> tuple[int, int] | None:
    at = text.find(raw)
    return None if at < 0 else (at, at + len(raw))


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(set(spans)):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


@functools.lru_cache(maxsize=4096)
def _email(value: str) -> str | None:
    try:
        return normalise_email(value)
    except InvalidAddress:
        return value.strip().casefold() or None


def terms_of(email: str | None, name: str | None, identifiers: str | None) -> list[str]:
    """The subject's identifiers to look for: email, full name, and each listed identifier (comma or line separated)."""
    found = [email or "", name or ""]
    found += [part for part in re.split(r"[,;\n]", identifiers or "")]
    return [t.strip() for t in found if t and len(t.strip()) >= MIN_TERM]


def subject_emails(email: str, identifiers: str | None) -> tuple[str, ...]:
    """The request's address first, then every other address among the identifiers staff entered (a second address)."""
    found = [email]
    for part in re.split(r"[,;\s]+", identifiers or ""):
        part = part.strip().strip("<>")
        if "@" in part and _email(part) not in {_email(f) for f in found}:
            found.append(part)
    return tuple(found)
