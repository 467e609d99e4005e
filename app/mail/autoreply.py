"""Is an inbound message automatic (an out-of-office, another helpdesk's "ticket received", a bounce)? Pure.

Automatic mail never opens a request, never becomes an instruction and never
reopens a ticket: that, with the per-recipient limit on the desk's own
automatic mail (`app.mail.policies`' rate limit), is what keeps two robots
from mailing each other forever. Recognised by headers first (RFC 3834
`Auto-Submitted`, the vendor `X-Autoreply` family, Outlook's
`X-Auto-Response-Suppress`, `Precedence: bulk/junk/list`, `List-Id`, a null
`Return-Path`, a delivery report), then by the subject prefixes that
auto-responders write, in the languages below (Outlook's, Gmail's and the
common helpdesks' wording).
"""

from __future__ import annotations

import re
from collections.abc import Callable

# Subject prefixes of automatic replies by language (ISO 639-1); matched at the start of the
# subject (after any "[tag]"), case-insensitively. Outlook's wording ("Automatic reply:") in each
# language it ships in, and the usual out-of-office and helpdesk-acknowledgement words.
AUTO_SUBJECT_PREFIXES: dict[str, tuple[str, ...]] = {
    "en": ("automatic reply", "auto reply", "auto-reply", "autoreply", "auto response", "auto-response", "automated response",
           "out of office autoreply", "out of office reply",
           "out of office", "out of the office", "vacation", "away from", "ticket received", "request received",
           "we have received your", "we received your", "thank you for contacting", "[ticket #", "auto:"),
    "de": ("automatische antwort", "autoantwort", "abwesenheitsnotiz", "abwesenheit", "nicht im büro", "ihre anfrage ist eingegangen",
           "eingangsbestätigung"),
    "fr": ("réponse automatique", "reponse automatique", "absence du bureau", "absent du bureau", "message d'absence",
           "accusé de réception"),
    "es": ("respuesta automática", "respuesta automatica", "fuera de la oficina", "fuera de oficina", "acuse de recibo"),
    "ca": ("resposta automàtica", "resposta automatica"),
    "it": ("risposta automatica", "fuori sede", "fuori ufficio", "assente dall'ufficio"),
    "nl": ("automatisch antwoord", "afwezigheidsbericht", "afwezig", "niet op kantoor", "ontvangstbevestiging"),
    "pt": ("resposta automática", "resposta automatica", "ausência temporária", "fora do escritório"),
    "pl": ("automatyczna odpowiedź", "automatyczna odpowiedz", "odpowiedź automatyczna", "odpowiedz automatyczna", "nieobecność", "poza biurem"),
    "sv": ("autosvar", "automatiskt svar", "frånvaro", "frånvarande"),
    "da": ("autosvar", "automatisk svar", "fraværende", "ikke på kontoret"),
    "nb": ("autosvar", "automatisk svar", "fraværende", "ikke på kontoret"),
    "fi": ("automaattinen vastaus", "poissa toimistolta"),
    "et": ("automaatne vastus", "automaatvastus"),
    "lv": ("automātiskā atbilde", "automatiska atbilde"),
    "lt": ("automatinis atsakymas",),
    "cs": ("automatická odpověď", "automaticka odpoved", "mimo kancelář"),
    "sk": ("automatická odpoveď", "automaticka odpoved"),
    "sl": ("samodejni odgovor",),
    "hr": ("automatski odgovor",),  # also Bosnian and Serbian in Latin script
    "sr": ("аутоматски одговор",),
    "hu": ("automatikus válasz", "automatikus valasz", "házon kívül", "hazon kivul"),
    "ro": ("răspuns automat", "raspuns automat", "absent de la birou"),
    "el": ("αυτόματη απάντηση", "εκτός γραφείου"),
    "bg": ("автоматичен отговор",),
    "ru": ("автоматический ответ", "автоответ", "нет на месте", "вне офиса"),
    "uk": ("автоматична відповідь", "автовідповідь"),
    "tr": ("otomatik yanıt", "otomatik yanit", "otomatik cevap", "ofis dışında"),
    "he": ("תשובה אוטומטית",),
    "ar": ("رد تلقائي", "الرد التلقائي"),
    "fa": ("پاسخ خودکار",),
    "hi": ("स्वचालित उत्तर", "स्वतः उत्तर"),
    "th": ("ตอบกลับอัตโนมัติ",),
    "vi": ("trả lời tự động", "tra loi tu dong"),
    "id": ("balasan otomatis", "balasan automatik"),  # and Malay
    "zh": ("自动回复", "自動回覆", "自動回復", "自动答复", "自動答覆", "不在办公室"),
    "ja": ("自動応答", "自動返信", "不在通知", "外出中"),
    "ko": ("자동 응답", "자동응답", "자동 회신", "자동회신", "부재중"),
    "eu": ("erantzun automatikoa",),
    "gl": ("resposta automática",),
    "mk": ("автоматски одговор",),
    "is": ("sjálfvirkt svar", "sjalfvirkt svar"),
    "ga": ("freagra uathoibríoch", "freagra uathoibrioch"),
    "mt": ("tweġiba awtomatika", "twegiba awtomatika"),
    "sq": ("përgjigje automatike", "pergjigje automatike"),
    "be": ("аўтаматычны адказ",),
    "ka": ("ავტომატური პასუხი",),
    "hy": ("ավտոմատ պատասխան",),
    "ms": ("balasan automatik",),
    "sw": ("jibu la kiotomatiki",),
    "cy": ("ateb awtomatig",),
}  # fmt: skip
# Words a person's subject may also start with ("Vacation rental booking ...", "Afwezigheid in mijn dossier"): taken
# as automatic only when the prefix stands alone, followed by a colon, a bracket, a spaced dash or nothing.
AMBIGUOUS_PREFIXES = frozenset(
    {"vacation", "away from", "out of office", "out of the office", "abwesenheit", "nicht im büro", "afwezig", "niet op kantoor",
     "frånvaro", "frånvarande", "fraværende", "ikke på kontoret", "nieobecność", "poza biurem", "fuori sede", "fuori ufficio",
     "fuera de la oficina", "fuera de oficina", "absence du bureau", "absent du bureau", "mimo kancelář", "házon kívül", "hazon kivul",
     "εκτός γραφείου", "нет на месте", "вне офиса", "ofis dışında", "外出中", "부재중", "autosvar", "poissa toimistolta"}
)  # fmt: skip


def _alternation(prefixes: set[str]) -> str:
    return "|".join(sorted((re.escape(p) for p in prefixes), key=len, reverse=True))


_ALL = {p for ps in AUTO_SUBJECT_PREFIXES.values() for p in ps}
_PREFIX = re.compile(
    r"^\s*(?:\[[^\]]{0,40}\]\s*)?(?:"
    + f"(?:{_alternation(_ALL - AMBIGUOUS_PREFIXES)})"
    + rf"|(?:{_alternation(set(AMBIGUOUS_PREFIXES))})(?=\s*(?:[:：\]\)]|\s[-–—]\s|$))"
    + ")",
    re.IGNORECASE,
)
_X_AUTOREPLY = ("X-Autoreply", "X-Autorespond", "X-Auto-Reply", "X-Autogenerated", "X-AutoReply-From", "X-Mail-Autoreply", "X-Autoresponse")
_SUPPRESS = {"all", "oof", "autoreply"}


def subject_is_automatic(subject: str) -> bool:
    """Whether a subject starts with an auto-responder's prefix in one of the known languages."""
    return _PREFIX.search(subject) is not None


def auto_reply_reason(header: Callable[[str], str], *, subject: str, content_type: str) -> str | None:
    """Why a message is automatic, or None for a person's mail; `header(name)` returns a decoded header value or ""."""
    auto_submitted = header("Auto-Submitted").lower()
    if auto_submitted and not auto_submitted.startswith("no"):
        return "auto_submitted"
    if header("Precedence").lower() in ("bulk", "junk", "list", "auto_reply"):
        return "precedence"
    if any(header(name) for name in _X_AUTOREPLY):
        return "x_autoreply"
    if {t.strip().lower() for t in header("X-Auto-Response-Suppress").split(",")} & _SUPPRESS:
        return "outlook_oof"
    if header("List-Id") or header("List-Unsubscribe"):
        return "mailing_list"
    if header("Return-Path").strip() == "<>" or content_type == "multipart/report":
        return "bounce"
    if subject_is_automatic(subject):
        return "automatic_subject"
    return None
