"""A keyword classifier that suggests "this looks like a data-subject request" on ordinary tickets.

It only suggests: staff confirm (the DSR clock then runs from the subject's
first message, not from the confirmation). Phrases in English, German,
Hungarian, French, Spanish and Dutch, matched on text folded to lower case
without accents, so "törlés", "torles" and "TÖRLÉS" all count.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

# A request is suggested when the text names a right (a type phrase) or uses a
# general data-protection phrase together with a request verb; scores are counts.
TYPE_PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "access": {
        "en": (
            "subject access request",
            "access request",
            "copy of my data",
            "copy of my personal data",
            "what data you hold",
            "what personal data",
            "right of access",
        ),
        "de": ("auskunft", "auskunftsersuchen", "kopie meiner daten", "welche daten", "recht auf auskunft"),
        "hu": ("hozzaferes", "masolatot", "milyen adatot", "milyen szemelyes adat", "tajekoztatast kerek"),
        "fr": ("droit d'acces", "acces a mes donnees", "copie de mes donnees", "quelles donnees"),
        "es": ("derecho de acceso", "copia de mis datos"),
        "nl": ("inzageverzoek", "recht op inzage", "kopie van mijn gegevens"),
    },
    "erasure": {
        "en": (
            "delete my data",
            "delete my personal data",
            "delete my account",
            "erase my data",
            "erasure",
            "right to be forgotten",
            "remove my data",
            "remove my personal data",
        ),
        "de": ("loschung", "loschen sie", "daten loschen", "recht auf vergessenwerden", "meine daten zu loschen", "entfernen sie meine daten"),
        "hu": ("torles", "toroljek", "torolje", "toroljetek", "elfeledtetes", "adataim torleset"),
        "fr": ("effacement", "supprimer mes donnees", "suppression de mes donnees", "droit a l'oubli", "effacer mes donnees"),
        "es": ("supresion", "borrar mis datos", "eliminar mis datos", "derecho al olvido"),
        "nl": ("verwijder mijn gegevens", "recht op vergetelheid", "gegevens verwijderen"),
    },
    "rectification": {
        "en": ("rectification", "rectify", "correct my data", "my data is wrong", "my data is incorrect", "update my personal data"),
        "de": ("berichtigung", "daten berichtigen", "daten korrigieren", "falsche daten"),
        "hu": ("helyesbites", "helyesbitse", "adataim javitasa", "hibas adat"),
        "fr": ("rectification", "rectifier mes donnees", "corriger mes donnees"),
        "es": ("rectificacion", "rectificar mis datos"),
        "nl": ("rectificatie", "gegevens corrigeren"),
    },
    "restriction": {
        "en": ("restriction of processing", "restrict processing", "restrict the processing"),
        "de": ("einschrankung der verarbeitung", "verarbeitung einschranken"),
        "hu": ("korlatozas", "adatkezeles korlatozasa"),
        "fr": ("limitation du traitement", "limiter le traitement"),
        "es": ("limitacion del tratamiento",),
        "nl": ("beperking van de verwerking",),
    },
    "objection": {
        "en": ("i object to", "right to object", "objection to processing", "stop processing my"),
        "de": ("widerspruch", "widerspreche"),
        "hu": ("tiltakozom", "tiltakozas"),
        "fr": ("je m'oppose", "droit d'opposition", "opposition au traitement"),
        "es": ("me opongo", "derecho de oposicion"),
        "nl": ("bezwaar tegen", "recht van bezwaar"),
    },
    "portability": {
        "en": ("data portability", "machine-readable", "export my data", "transfer my data"),
        "de": ("datenubertragbarkeit", "daten exportieren", "maschinenlesbar"),
        "hu": ("adathordozhatosag", "adataim exportalasa", "geppel olvashato"),
        "fr": ("portabilite", "exporter mes donnees"),
        "es": ("portabilidad",),
        "nl": ("overdraagbaarheid", "dataportabiliteit"),
    },
}
GENERAL_PHRASES: dict[str, tuple[str, ...]] = {
    "en": ("gdpr", "personal data", "data protection", "article 15", "article 17", "my data"),
    "de": ("dsgvo", "personenbezogene daten", "datenschutz", "meine daten", "art. 15", "art. 17"),
    "hu": ("gdpr", "szemelyes adat", "adatvedelem", "adataim", "adatvedelmi"),
    "fr": ("rgpd", "donnees personnelles", "protection des donnees", "mes donnees"),
    "es": ("rgpd", "datos personales", "proteccion de datos", "mis datos"),
    "nl": ("avg", "persoonsgegevens", "mijn gegevens"),
}
SCAN_CHARS = 20_000
THRESHOLD = 2


@dataclass(frozen=True)
class Suggestion:
    """What the classifier saw: suggested types, the languages that matched and a score."""

    looks_like_dsr: bool
    types: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    score: int = 0


def fold(text: str) -> str:
    """Lower case without accents, single spaces (ő -> o, ß -> ss, é -> e)."""
    if text.isascii():
        # The same result without the Unicode work: ASCII has nothing to decompose and casefold is lower there.
        return " ".join(text.lower().split())
    text = text.replace("ß", "ss").replace("ẞ", "ss")
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.replace("’", "'").split())


_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


def _found(phrase: str, text: str) -> bool:
    # Whole words at the start of the phrase, so "avg" does not match inside "average": an occurrence not preceded
    # by [a-z0-9] (what the lookbehind `(?<![a-z0-9])` said, found with str.find: most phrases are not in the text).
    at = text.find(phrase)
    while at != -1:
        if at == 0 or text[at - 1] not in _WORD_CHARS:
            return True
        at = text.find(phrase, at + 1)
    return False


def classify(text: str) -> Suggestion:
    """Suggest whether `text` (a subject line and body) is a data-subject request, and of which types."""
    folded = fold(text[:SCAN_CHARS])
    types: list[str] = []
    languages: set[str] = set()
    score = 0
    for kind, by_language in TYPE_PHRASES.items():
        for language, phrases in by_language.items():
            hits = sum(1 for p in phrases if _found(p, folded))
            if hits:
                if kind not in types:
                    types.append(kind)
                languages.add(language)
                score += 2 * hits
    for language, phrases in GENERAL_PHRASES.items():
        hits = sum(1 for p in phrases if _found(p, folded))
        if hits:
            languages.add(language)
            score += hits
    return Suggestion(looks_like_dsr=score >= THRESHOLD and bool(types), types=types, languages=sorted(languages), score=score)
