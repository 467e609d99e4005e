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
            "forget me",
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
        "de": ("einschrankung der verarbeitung", "verarbeitung einschranken", "schranken sie die verarbeitung"),
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
# Requests said in other words than TYPE_PHRASES' ("please delete all my personal data", "usuńcie moje dane"): a
# request verb and a data term close together (WINDOW characters of folded text, either order, not overlapping), in
# one language. Stems match at word starts (CJK: anywhere). ACCOUNT terms count only for erasure ("delete my account"
# is a request; "access my account" is a login question).
WINDOW = 80
DATA_TERMS: dict[str, tuple[str, ...]] = {
    # English "data" and "details" alone are everyday words of support mail ("my data plan", "access the details of my
    # order"): only personal or possessive forms count.
    "en": (
        "my data", "my personal", "personal data", "personal information", "personal details", "my information", "my details",
        "my records", "your records", "data you", "data about me", "data held", "information about me", "information you", "any data", "all data",
        "all the data", "all of my data", "about me", "on me", "on file", "my info", "my email address", "my address",
        "my phone number", "everything about me", "anything about me",
    ),
    "de": ("daten", "angaben", "informationen", "uber mich"),
    "fr": ("donnees", "informations"), "es": ("datos", "informacion"), "pt": ("dados", "informac"), "it": ("dati", "informazioni"),
    "nl": ("gegevens", "persoonsgegevens"), "pl": ("dane", "danych", "informacj"), "cs": ("udaj", "osobni"), "hu": ("adat",),
    "sv": ("personuppgift", "uppgifter om mig"), "da": ("personoplysning", "oplysninger om mig"), "no": ("personopplysning", "opplysninger om meg"),
    "fi": ("henkilotie", "tietoni", "tietojeni", "tiedot"), "tr": ("veri", "kisisel"), "ru": ("данн", "персональн"),
    "ja": ("個人データ", "個人情報", "データ"), "zh": ("个人数据", "个人信息", "数据"),
    "ro": ("datele", "datelor", "date personale", "date cu caracter personal"), "el": ("δεδομεν", "προσωπικ"),
    "uk": ("даних", "дані", "персональн"), "hr": ("podat", "osobn"), "bg": ("данни", "данните", "лични"),
    "ko": ("개인정보", "데이터", "정보"), "ar": ("بيانات", "بياناتي", "معلوماتي"),
}  # fmt: skip
# Everyday phrases that hold a data term but are not about personal data (a data term inside one does not count).
NOT_DATA_TERMS: dict[str, tuple[str, ...]] = {
    "en": (
        "my data plan", "my data usage", "my data allowance", "my data roaming", "my data limit", "my data volume", "my data bundle",
        "personal area", "personal page", "personal account", "personal details page", "personal settings", "personal dashboard",
    ),
}  # fmt: skip
# How-to openings: a request verb up to HOWTO_REACH characters after one is asked about, not requested.
HOWTO_REACH = 30
HOWTO: tuple[str, ...] = (
    "how do i", "how can i", "how to", "how do you", "how does one", "where can i", "where do i", "is it possible to",
    "wie kann ich", "wie konnen", "wie lasst sich", "wie geht", "wo kann ich", "wie ", "comment ", "ou puis-je",
    "como puedo", "como se ", "como posso", "como faco", "come posso", "come si ", "come faccio", "hoe kan ik", "hoe ",
    "jak moge", "jak mozna", "jak ", "try to", "trying to", "tried to", "attempt to",
)  # fmt: skip
ACCOUNT_TERMS: dict[str, tuple[str, ...]] = {
    "en": ("account", "profile"), "de": ("konto", "account", "profil"), "fr": ("compte",), "es": ("cuenta",), "pt": ("conta",),
    "it": ("account", "profilo"), "nl": ("account", "profiel"), "pl": ("konto", "konta"), "cs": ("ucet", "uctu"), "hu": ("fiok",),
    "sv": ("konto",), "da": ("konto",), "no": ("konto",), "fi": ("tili",), "tr": ("hesab",), "ru": ("аккаунт", "учетн"),
    "ja": ("アカウント",), "zh": ("账户", "帐户", "账号"),
}  # fmt: skip
ACTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "erasure": {
        "en": ("delete", "deletion", "erase", "remove", "wipe"), "de": ("losch", "entfern"), "fr": ("supprim", "suppression", "effac"),
        "es": ("elimin", "borr", "supres", "suprim"), "pt": ("apag", "elimin", "exclu", "remov"), "it": ("cancell", "elimin", "rimuov", "rimozione"),
        "nl": ("verwijder", "wissen", "wis "), "pl": ("usun", "skasow"), "cs": ("vymaz", "smaz", "odstran"), "hu": ("torl", "torol"),
        "sv": ("radera", "ta bort"), "da": ("slet",), "no": ("slett",), "fi": ("poista",), "tr": ("silin", "silme"), "ru": ("удал",),
        "ja": ("削除", "消去"), "zh": ("删除", "清除"),
        "ro": ("sterge", "stergere"), "el": ("διαγραφ", "διαγραψ"), "uk": ("видал",), "hr": ("izbris", "obris", "brisanj"),
        "bg": ("изтри",), "ko": ("삭제",), "ar": ("حذف", "مسح"),
    },
    "access": {
        "en": ("access", "a copy", "copy of", "what data", "which data", "what personal", "what information", "which information",
               "see all", "see what", "see everything"),
        "de": ("kopie", "zugang", "einsicht", "welche daten", "uber mich"), "fr": ("acces", "copie", "quelles donnees", "me concernant"),
        "es": ("acceso", "copia", "que datos", "sobre mi"), "pt": ("acesso", "copia", "que dados", "sobre mim"),
        "it": ("accesso", "copia", "quali dati", "che mi riguardano"), "nl": ("inzage", "kopie", "welke gegevens", "over mij"),
        "pl": ("dostep", "kopi", "jakie dane", "na moj temat"), "cs": ("pristup", "kopi", "jake udaje"), "hu": ("masolat", "hozzafer"),
        "sv": ("tillgang", "kopia", "registerutdrag", "om mig"), "da": ("indsigt", "kopi", "om mig"), "no": ("innsyn", "kopi", "om meg"),
        "fi": ("tarkastus", "kopio", "paasy"), "tr": ("erisim", "kopya", "hakkimda"), "ru": ("доступ", "копи", "обо мне"),
        "ja": ("開示", "コピー"), "zh": ("访问", "副本", "查阅", "查询"),
        "ro": ("acces", "copie"), "el": ("προσβαση", "αντιγραφο"), "uk": ("доступ", "копі"), "hr": ("pristup", "kopij"),
        "bg": ("достъп", "копие"), "ko": ("열람", "사본"), "ar": ("الوصول", "نسخة"),
    },
    "rectification": {
        "en": ("rectif", "correct my", "correct the", "be corrected", "is wrong", "are wrong", "is incorrect", "are incorrect",
               "inaccurate", "outdated", "update my"),
        "de": ("berichtig", "korrigier", "falsch", "aktualisieren sie", "zu aktualisieren"), "fr": ("rectif", "corrig", "inexact", "erron"),
        "es": ("rectific", "corregir", "incorrect", "erroneo"),
        "pt": ("retific", "corrigir", "incorret"), "it": ("rettific", "correggere", "errat", "inesatt"),
        "nl": ("rectific", "corrigeer", "corrigeren", "onjuist"),
        "pl": ("sprostow", "popraw", "nieprawidlow"), "cs": ("oprav",), "hu": ("helyesbit", "javit"), "sv": ("rattelse", "ratta", "felaktig"),
        "da": ("berigtig", "rettelse", "forkert"), "no": ("retting", "rette", "feil"), "fi": ("oikaise", "korjaa", "virheellis"), "tr": ("duzelt",),
        "ru": ("исправ",), "ja": ("訂正",), "zh": ("更正", "纠正"),
        "ro": ("rectific", "corect"), "el": ("διορθωσ",), "uk": ("виправ",), "hr": ("isprav",), "bg": ("коригир", "поправ"), "ko": ("정정",), "ar": ("تصحيح",),
    },
    "restriction": {
        "en": ("restrict", "limit the processing"), "de": ("einschrank",), "fr": ("limitation", "limiter"), "es": ("limitacion", "limitar"),
        "pt": ("limitacao", "limitar"), "it": ("limitazione", "limitare"), "nl": ("beperking", "beperken"), "pl": ("ogranicz",), "cs": ("omezen",),
        "hu": ("korlatoz",), "sv": ("begransning", "begransa"), "da": ("begraensning",), "no": ("begrensning",), "fi": ("rajoit",), "tr": ("kisitla",),
        "ru": ("огранич",), "ja": ("制限",), "zh": ("限制",),
        "ro": ("restrictionar", "limitar"), "el": ("περιορισμ",), "uk": ("обмеж",), "hr": ("ograni",), "bg": ("ограничав",), "ko": ("제한",), "ar": ("تقييد",),
    },
    "objection": {
        "en": ("i object", "object to", "stop using", "stop processing", "opt out", "opt-out"), "de": ("widersprech", "widerspruch"),
        "fr": ("m'oppose", "opposition"), "es": ("me opongo", "oposicion"), "pt": ("oponho", "oposicao"), "it": ("mi oppongo", "opposizione"),
        "nl": ("bezwaar",), "pl": ("sprzeciw",), "cs": ("namitk",), "hu": ("tiltakoz",), "sv": ("invandning", "motsatter"), "da": ("indsigelse",),
        "no": ("protesterer", "innsigelse"), "fi": ("vastust",), "tr": ("itiraz",), "ru": ("возража",), "ja": ("異議",), "zh": ("反对",),
        "ro": ("ma opun", "opozitie"), "el": ("αντιταξ", "εναντιωσ"), "uk": ("заперечу",), "hr": ("prigovor",),
        "bg": ("възраз",), "ko": ("반대",), "ar": ("اعتراض",),
    },
    "portability": {
        "en": ("portab", "machine-readable", "export my", "export all", "export the data", "export of my", "transfer my"),
        "de": ("ubertrag", "maschinenlesbar", "exportier"),
        "fr": ("portabilite", "export", "recuperer", "transferer"),
        "es": ("portabilidad", "exportar"), "pt": ("portabilidade", "exportar"), "it": ("portabilita", "esporta"), "nl": ("overdraagbaar", "exporte"),
        "pl": ("przenoszeni", "eksport"), "cs": ("prenositel",), "hu": ("hordozhato",), "sv": ("dataportabilitet", "exportera"),
        "da": ("dataportabilitet", "eksporter"),
        "no": ("dataportabilitet", "eksporter"), "fi": ("siirrettavyy",), "tr": ("tasinab",), "ru": ("переносим", "экспорт"),
        "ja": ("ポータビリティ", "エクスポート"),
        "zh": ("可携", "导出"),
        "ro": ("portabilit",), "el": ("φορητοτητ",), "uk": ("перенос",), "hr": ("prenosiv",), "bg": ("преносим",), "ko": ("이동",), "ar": ("نقل",),
    },
}  # fmt: skip
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

    def said(at: int) -> bool:  # not within HOWTO_REACH characters after a how-to opening, in the same sentence
        return not any(0 <= at - end <= HOWTO_REACH and not _SENTENCE_END.search(folded, end, at) for end in asked)

    types: list[str] = []
    languages: set[str] = set()
    requested: set[str] = set()
    score = 0
    for kind, by_language in TYPE_PHRASES.items():
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
    for language, phrases in GENERAL_PHRASES.items():
        hits = sum(1 for p in phrases if _found(p, folded))
        if hits:
            languages.add(language)
            score += hits
    return Suggestion(looks_like_dsr=score >= THRESHOLD and bool(requested), types=types, languages=sorted(languages), score=score)


def _stems(stems: tuple[str, ...]) -> re.Pattern[str]:
    # Longest first, at a word start (CJK and Cyrillic stems: never preceded by [a-z0-9], so anywhere in a word).
    # Folded like the text (NFKD splits the voicing marks off Japanese kana: "データ" is matched as the text becomes).
    folded = sorted({fold(s) for s in stems}, key=len, reverse=True)
    return re.compile(r"(?<![a-z0-9])(?:" + "|".join(re.escape(s) for s in folded) + ")")


_DATA = {language: _stems(terms) for language, terms in DATA_TERMS.items()}
_ACCOUNT = {language: _stems(terms) for language, terms in ACCOUNT_TERMS.items()}
_ACTIONS = {kind: {language: _stems(stems) for language, stems in by_language.items()} for kind, by_language in ACTIONS.items()}
# Every language's terms in one pattern: one scan of the text says which languages to try (most texts: one).
_TERM_LANGUAGES: dict[str, set[str]] = {}
for _language in DATA_TERMS:
    for _term in (*DATA_TERMS[_language], *ACCOUNT_TERMS.get(_language, ())):
        _TERM_LANGUAGES.setdefault(fold(_term), set()).add(_language)
_ANY_TERM = _stems(tuple(_TERM_LANGUAGES))


@functools.lru_cache(maxsize=1024)
def _languages_of(found: str) -> frozenset[str]:
    # The languages with a term that this match begins with (a shorter term of another language may hide under it).
    return frozenset(language for term, languages in _TERM_LANGUAGES.items() if found.startswith(term) for language in languages)


_SENTENCE_END = re.compile(r"[?.!;\n]")
_HOWTO = re.compile(r"(?<![a-z0-9])(?:" + "|".join(re.escape(fold(h)) if not h.endswith(" ") else re.escape(h) for h in HOWTO) + ")")
_NOT_DATA = {language: _stems(terms) for language, terms in NOT_DATA_TERMS.items()}


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
