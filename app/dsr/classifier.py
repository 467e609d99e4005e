"""A keyword classifier that suggests "this looks like a data-subject request" on ordinary tickets.

It only suggests: staff confirm (the DSR clock then runs from the subject's
first message, not from the confirmation); in single-address mode what it
recognises opens a request (app.dsr.intake). Set phrases in English, German,
Hungarian, French, Spanish and Dutch, and a request verb near a data term
(`_paired`) in those and Portuguese, Italian, Polish, Czech, Swedish, Danish,
Norwegian, Finnish, Turkish, Russian, Japanese, Chinese, Romanian, Greek,
Ukrainian, Croatian, Bulgarian, Korean and Arabic, matched on text
folded to lower case without accents, so "törlés", "torles" and "TÖRLÉS" all count.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

from app.dsr.classifier_terms import (
    ACCOUNT_TERMS,
    ACTIONS,
    DATA_TERMS,
    GENERAL_PHRASES,
    HOWTO,
    HOWTO_AFTER,
    HOWTO_REACH,
    NOT_DATA_TERMS,
    TYPE_PHRASES,
    WINDOW,
)

SCAN_CHARS = 20_000
THRESHOLD = 2


@dataclass(frozen=True)
class Suggestion:
    """What the classifier saw: suggested types, the languages that matched and a score."""

    looks_like_dsr: bool
    types: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    score: int = 0


# Letters NFKD does not split into a base letter and a mark (Polish ł, Danish ø, Turkish ı, ...), and invisible
# characters that would split a word (zero-width space and joiners, soft hyphen, word joiner, BOM).
_UNDECOMPOSED = str.maketrans(
    {"ß": "ss", "ẞ": "ss", "ł": "l", "Ł": "l", "đ": "d", "Đ": "d", "ø": "o", "Ø": "o", "æ": "ae", "Æ": "ae", "œ": "oe",
     "Œ": "oe", "ı": "i", "ħ": "h", "Ħ": "h", "þ": "th", "Þ": "th", "ð": "d", "Ð": "d",
     "\u200b": None, "\u200c": None, "\u200d": None, "\u00ad": None, "\u2060": None, "\ufeff": None}
)  # fmt: skip


def fold(text: str) -> str:
    """Lower case without accents, single spaces (ő -> o, ß -> ss, é -> e, ł -> l, ø -> o; zero-width characters dropped)."""
    if text.isascii():
        # The same result without the Unicode work: ASCII has nothing to decompose and casefold is lower there.
        return " ".join(text.lower().split())
    text = text.translate(_UNDECOMPOSED)
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.replace("’", "'").split())


_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
# The set phrases folded like the text (the tables may keep accents).
_TYPE_PHRASES = {kind: {language: tuple(fold(p) for p in phrases) for language, phrases in by_language.items()} for kind, by_language in TYPE_PHRASES.items()}
_GENERAL_PHRASES = {language: tuple(fold(p) for p in phrases) for language, phrases in GENERAL_PHRASES.items()}


def _found(phrase: str, text: str) -> bool:
    # Whole words at the start of the phrase, so "avg" does not match inside "average": an occurrence not preceded
    # by [a-z0-9] (what the lookbehind `(?<![a-z0-9])` said, found with str.find: most phrases are not in the text).
    at = text.find(phrase)
    while at != -1:
        if at == 0 or text[at - 1] not in _WORD_CHARS:
            return True
        at = text.find(phrase, at + 1)
    return False


def _found_at(phrase: str, text: str) -> list[int]:
    # Every start of `phrase` in `text` at a word start (see `_found`).
    out, at = [], text.find(phrase)
    while at != -1:
        if at == 0 or text[at - 1] not in _WORD_CHARS:
            out.append(at)
        at = text.find(phrase, at + 1)
    return out


def classify(text: str) -> Suggestion:
    """Suggest whether `text` (a subject line and body) is a data-subject request, and of which types.

    A type found only in a how-to question ("How do I delete my account?", "Wie kann ich meine Daten exportieren?")
    is suggested but opens nothing by itself: `looks_like_dsr` needs one said as a request.
    """
    folded = fold(text[:SCAN_CHARS])
    asked = [m.end() for m in _HOWTO.finditer(folded)]

    def said(at: int) -> bool:  # not within HOWTO_REACH characters after a how-to opening (or 20 before one said after), one sentence
        if any(0 <= at - end <= HOWTO_REACH and not _SENTENCE_END.search(folded, end, at) for end in asked):
            return False
        after = _HOWTO_AFTER.search(folded, at, at + 20)
        return after is None or _SENTENCE_END.search(folded, at, after.start()) is not None

    types: list[str] = []
    languages: set[str] = set()
    requested: set[str] = set()
    score = 0
    for kind, by_language in _TYPE_PHRASES.items():
        for language, phrases in by_language.items():
            found = [at for p in phrases for at in _found_at(p, folded)]
            if found:
                if kind not in types:
                    types.append(kind)
                languages.add(language)
                score += 2 * len({p for p in phrases if _found_at(p, folded)})
                requested.update(kind for at in found if said(at))
    paired, paired_languages = _paired(folded, said)
    for kind, as_request in paired.items():
        if kind not in types:
            types.append(kind)
            score += 2
        if as_request:
            requested.add(kind)
    languages |= paired_languages
    for language, phrases in _GENERAL_PHRASES.items():
        hits = sum(1 for p in phrases if _found(p, folded))
        if hits:
            languages.add(language)
            score += hits
    return Suggestion(looks_like_dsr=score >= THRESHOLD and bool(requested), types=types, languages=sorted(languages), score=score)


def stems_pattern(stems: tuple[str, ...]) -> re.Pattern[str]:
    """One pattern for `stems`, each matched at a word start in folded text (`fold`), longest first."""
    # Longest first, at a word start (CJK and Cyrillic stems: never preceded by [a-z0-9], so anywhere in a word).
    # Folded like the text (NFKD splits the voicing marks off Japanese kana: "データ" is matched as the text becomes).
    folded = sorted({fold(s) for s in stems}, key=len, reverse=True)
    return re.compile(r"(?<![a-z0-9])(?:" + "|".join(re.escape(s) for s in folded) + ")")


_DATA = {language: stems_pattern(terms) for language, terms in DATA_TERMS.items()}
_ACCOUNT = {language: stems_pattern(terms) for language, terms in ACCOUNT_TERMS.items()}
_ACTIONS = {kind: {language: stems_pattern(stems) for language, stems in by_language.items()} for kind, by_language in ACTIONS.items()}
# Every language's terms in one pattern: one scan of the text says which languages to try (most texts: one).
_TERM_LANGUAGES: dict[str, set[str]] = {}
for _language in DATA_TERMS:
    for _term in (*DATA_TERMS[_language], *ACCOUNT_TERMS.get(_language, ())):
        _TERM_LANGUAGES.setdefault(fold(_term), set()).add(_language)
_ANY_TERM = stems_pattern(tuple(_TERM_LANGUAGES))


@functools.lru_cache(maxsize=1024)
def _languages_of(found: str) -> frozenset[str]:
    # The languages with a term that this match begins with (a shorter term of another language may hide under it).
    return frozenset(language for term, languages in _TERM_LANGUAGES.items() if found.startswith(term) for language in languages)


_SENTENCE_END = re.compile(r"[?.!;\n。？！]")
_HOWTO_AFTER = re.compile("|".join(re.escape(fold(h)) for h in HOWTO_AFTER))
_HOWTO = re.compile(r"(?<![a-z0-9])(?:" + "|".join(re.escape(fold(h)) if not h.endswith(" ") else re.escape(h) for h in HOWTO) + ")")
_NOT_DATA = {language: stems_pattern(terms) for language, terms in NOT_DATA_TERMS.items()}


def _near(span: tuple[int, int], others: list[tuple[int, int]]) -> bool:
    # Within WINDOW characters, neither inside the other ("what information" and "information about me" overlap and
    # count; "what personal" alone does not make "personal" a second word).
    start, end = span
    return any(not (b0 <= start and end <= b1) and not (start <= b0 and b1 <= end) and max(b0 - end, start - b1) <= WINDOW for b0, b1 in others)


def _paired(folded: str, said: Callable[[int], bool]) -> tuple[dict[str, bool], set[str]]:
    """The types whose request verb stands within WINDOW of a data term of the same language (True: one of them said
    as a request, not in a how-to question), and those languages."""
    types: dict[str, bool] = {}
    languages: set[str] = set()
    candidates = {language for m in _ANY_TERM.finditer(folded) for language in _languages_of(m.group())}
    for language, data in _DATA.items():
        if language not in candidates:
            continue
        not_data = [m.span() for m in _NOT_DATA[language].finditer(folded)] if language in _NOT_DATA else []
        terms = [m.span() for m in data.finditer(folded) if not any(b0 < m.end() and m.start() < b1 for b0, b1 in not_data)]
        accounts = [m.span() for m in _ACCOUNT[language].finditer(folded)] if language in _ACCOUNT else []
        if not terms and not accounts:
            continue
        for kind, by_language in _ACTIONS.items():
            near = terms + accounts if kind == "erasure" else terms
            verbs = by_language.get(language)
            found = [m.start() for m in verbs.finditer(folded) if _near(m.span(), near)] if verbs is not None and near else []
            if found:
                languages.add(language)
                types[kind] = types.get(kind, False) or any(said(at) for at in found)
    return types, languages
