"""Text rewriting for erasure and rectification: every occurrence of the subject's identifiers, case-insensitively."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

from app.addresses import InvalidAddress, normalise_email

ERASED = "[erased]"
MIN_TERM = 3  # shorter terms would redact ordinary words


class Rewriter:
    """Replaces each term (longest first) with its replacement; `changes(text)` says whether anything matched."""

    def __init__(self, replacements: Mapping[str, str]) -> None:
        terms = {t.strip(): r for t, r in replacements.items() if t and len(t.strip()) >= MIN_TERM}
        self._by_lower = {t.casefold(): r for t, r in terms.items()}
        ordered = sorted(terms, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(t) for t in ordered), re.IGNORECASE) if ordered else None
        self.emails = {_email(t) for t in terms if "@" in t} - {None}

    def __call__(self, text: str | None) -> str | None:
        if text is None or self._pattern is None:
            return text
        return self._pattern.sub(lambda m: self._by_lower.get(m.group(0).casefold(), ERASED), text)

    def contains(self, data: bytes) -> bool:
        """Whether raw bytes (a quarantined message) mention a term."""
        if self._pattern is None:
            return False
        return self._pattern.search(data.decode("utf-8", "replace")) is not None

    def is_subject_email(self, value: str | None) -> bool:
        """Whether an address is one of the subject's (normalised)."""
        return bool(value) and _email(value or "") in self.emails


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
