"""Communications (Pexgle §11.2): a complaint, notice or communication about the processing goes to the controller at once.

Not every privacy message is a request. A complaint about how a ticket was
handled, a letter from a supervisory authority or a lawyer's notice must be
passed to the controller *immediately*, but it has no types, no instruction to
wait for and no erasure to run. `claim_communication` (an intake handler asked
before `claim_request`) recognises such new mail to the privacy address by the
phrases below (folded like the request classifier), forwards it to each of the
controller's DSR contacts as outbox rows of kind `controller_communication`
(delivery tracked like a forward: the rows' states, bounces marked on them) and
records the forward as a note on the ticket. A communication whose controller is
not known stays a triage ticket with a note saying it must be passed on.

The sender still gets nothing from the desk: `communication_policy` refuses any
email on such a ticket to anyone but staff and the controller's contacts.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import User
from app.controllers.models import Controller
from app.crypto.message_ids import digests as message_id_digests
from app.dsr.classifier import classify, fold, stems_pattern
from app.mail.intake import Inbound
from app.mail.outbox import enqueue_email, msgid_domain_for
from app.mail.policies import OutboundMessage, OutboundRefused, Refusal
from app.principal import Principal
from app.tickets import service as tickets
from app.tickets.models import Message, Ticket

KIND = "controller_communication"
POLICY_NAME = "dsr.communication_gate"
TEXT_CHARS = 20_000
# Phrases by what they are, in folded text (lower case, no accents: `fold`), matched at word starts, so a phrase is
# also a prefix ("complain" finds complaint, complaining); the first kind found wins (an authority's letter about a
# complaint is the authority's). Short names (an authority's initials) must be whole words: WORDS. English, German,
# French, Spanish, Portuguese, Italian, Dutch, Polish, Czech, Hungarian, Swedish, Danish/Norwegian, Finnish, Turkish,
# Russian, Japanese and Chinese.
PHRASES: dict[str, tuple[str, ...]] = {
    "authority": (
        "supervisory authority", "data protection authorit", "information commissioner", "data protection commission",
        "data protection supervisor", "privacy commissioner", "aufsichtsbehorde", "datenschutzbehorde", "datenschutzaufsicht",
        "landesbeauftragte fur datenschutz", "bundesbeauftragte fur den datenschutz", "autorite de controle",
        "commission nationale de l'informatique", "commission nationale pour la protection des donnees",
        "agencia espanola de proteccion de datos", "autoridade de protecao de dados", "comissao nacional de protecao de dados",
        "autoriteit persoonsgegevens", "gegevensbeschermingsautoriteit", "garante per la protezione", "garante privacy",
        "nemzeti adatvedelmi", "urzad ochrony danych", "urzedu ochrony danych", "prezes uodo", "urad pro ochranu osobnich udaju", "integritetsskyddsmyndighet",
        "datainspektion", "datatilsynet", "tietosuojavaltuutet", "kisisel verileri koruma", "роскомнадзор", "個人情報保護委員会",
        "autoritatea nationala de supraveghere", "αρχη προστασιας δεδομενων", "개인정보보호위원회",
    ),
    "legal": (
        "on behalf of my client", "on behalf of our client", "my client", "our client", "we act for", "acting for",
        "legal notice", "letter before action", "letter before claim", "letter of claim", "pre-action", "cease and desist",
        "solicitor", "attorney", "law firm", "legal proceedings", "lawsuit", "litigation",
        "im auftrag meines mandanten", "namens meines mandanten", "mandant", "rechtsanwalt", "anwaltskanzlei", "abmahnung",
        "mahnen wir sie", "mise en demeure", "au nom de mon client", "ma cliente", "notre client", "avocat",
        "en nombre de mi cliente", "en representacion de", "mi cliente", "abogad", "burofax", "advogad", "meu cliente",
        "minha cliente", "notificacao extrajudicial", "per conto del mio cliente", "mio assistito", "diffid", "avvocat",
        "studio legale", "namens mijn client", "mijn client", "advocaat", "ingebrekestelling", "sommatie", "adwokat",
        "radca prawny", "kancelari", "mojego klienta", "muj klient", "ugyfelem megbizasabol", "ugyved", "advokat",
        "min klient", "var klient", "asianajaja", "asiakkaani", "paamieheni", "avukat", "muvekkil", "адвокат",
        "досудебн", "弁護士", "律师",
    ),
    "complaint": (
        "complain", "lodge a complaint", "article 77", "art. 77", "artikel 77",
        "beschwer", "plainte", "reclamation", "je me plains", "queja", "quejarme", "reclamacion", "reclamacao", "queixa",
        "klacht", "ik wil klagen", "reclamo", "lamentela", "panasz", "skarg", "zazalen", "stiznost",
        "klagomal", "klage over", "klage til", "valitus", "valituksen", "kantelu", "sikayet", "жалоб", "苦情", "投诉",
        "καταγγελ", "plangere", "reclamatie", "민원", "불만", "شكوى", "بشكوى",
    ),
}  # fmt: skip
# A complaint is a communication only about the processing (Pexgle §11.2): it names personal data, privacy, consent or
# the GDPR (PRIVACY_TERMS), or how a ticket or request was handled (a HANDLED word within 60 characters of a CASES
# word). "Beschwerde: mein Paket ist nicht angekommen", "my refund request was ignored", "the handling fee", "my mobile
# data stopped working" are about products and service, not this. (An authority's or a lawyer's letter always is.)
PRIVACY_TERMS: tuple[str, ...] = (
    "personal data", "personal information", "my data", "my personal", "privacy", "gdpr", "data protection", "consent",
    "my phone number", "my email address", "my address", "my information", "my details", "shared my", "disclosed",
    "leaked", "data breach", "without my permission", "article 77", "art. 77", "artikel 77",
    "personenbezogen", "meine daten", "meiner daten", "datenschutz", "dsgvo", "einwilligung", "weitergegeben",
    "donnees personnelles", "mes donnees", "vie privee", "rgpd", "consentement", "divulgu",
    "datos personales", "mis datos", "privacidad", "consentimiento", "dados pessoais", "meus dados", "privacidade",
    "lgpd", "consentimento", "dati personali", "miei dati", "consenso", "persoonsgegevens", "mijn gegevens", "avg",
    "toestemming", "dane osobowe", "danych osobowych", "moje dane", "moich danych", "prywatnosc", "rodo", "zgody",
    "osobni udaje", "osobnich udaju", "souhlas", "szemelyes adat", "adataim", "adatvedelm", "hozzajarulas",
    "personuppgift", "samtycke", "personoplysning", "samtykke", "personopplysning", "henkilotie", "tietosuoja",
    "suostumus", "kisisel veri", "kvkk", "персональн", "мои данные", "моих данных", "согласи", "个人信息", "个人数据",
    "隐私", "個人情報", "個人データ", "προσωπικα δεδομενα", "δεδομενα μου", "δεδομεν", "date personale", "datele mele", "개인정보",
    "بياناتي", "البيانات الشخصية",
)  # fmt: skip
HANDLED: tuple[str, ...] = (
    "handled", "dealt with", "treated", "handling of my", "bearbeitet", "bearbeitung meine", "umgegangen", "traite",
    "traitement de ma", "traitement de mon", "gere", "gestion de ma", "tratado", "tratamiento de mi", "gestionado",
    "gestion de mi", "tratamento d", "gestito", "gestita", "gestione della mia", "trattato", "trattata", "behandeld",
    "behandeling van mijn", "rozpatrzon", "obsluzon", "obslugi mojego", "obslugi mojej", "hanterad", "hanterat", "hanteringen av", "vyrizen",
    "behandlet", "behandlingen af", "kasitelt", "kasittely", "ele alin", "обработан", "рассмотрен", "対応", "处理",
)  # fmt: skip
CASES: tuple[str, ...] = (
    "ticket", "request", "case", "enquiry", "inquiry", "anfrage", "anliegen", "demande", "dossier", "solicitud", "caso",
    "consulta", "pedido", "solicitacao", "richiesta", "pratica", "verzoek", "zgloszeni", "wniosek", "sprawy", "sprawa",
    "arende", "begaran", "henvendelse", "anmodning", "tiketti", "pyynto", "talep", "talebi", "pozadav", "обращени", "заявк", "запрос",
    "問い合わせ", "チケット", "工单", "请求", "申请",
)  # fmt: skip
WORDS: dict[str, tuple[str, ...]] = {
    "authority": ("anspdcp", "ico", "dpc", "edps", "edpb", "cnil", "aepd", "cnpd", "anpd", "uodo", "naih", "imy", "bfdi", "baylda", "kvkk", "garante"),
}  # fmt: skip
_PHRASE = {
    what: re.compile(
        # Folded like the text: Greek final sigma, Korean syllables (NFKD splits them) must meet it in the same form.
        r"(?<![a-z0-9])(?:" + "|".join([re.escape(fold(p)) for p in PHRASES[what]] + [re.escape(w) + r"(?![a-z0-9])" for w in WORDS.get(what, ())]) + r")"
    )
    for what in PHRASES
}


_PRIVACY, _HANDLED, _CASES = stems_pattern(PRIVACY_TERMS), stems_pattern(HANDLED), stems_pattern(CASES)


def about_the_processing(folded: str, complaints: Sequence[int] = ()) -> bool:
    """Whether folded text names personal data or privacy, says how a ticket or request was handled (a HANDLED word
    within 60 characters of a CASES word), or complains about one (a CASES word up to 25 characters after a complaint's
    end in `complaints`, in the same sentence: "a formal complaint about my ticket")."""
    if _PRIVACY.search(folded):
        return True
    cases = [m.start() for m in _CASES.finditer(folded)]
    if any(0 <= at - end <= 25 and not _SENTENCE_END.search(folded, end, at) for end in complaints for at in cases):
        return True
    return any(abs(m.start() - at) <= 60 for m in _HANDLED.finditer(folded) for at in cases)


_SENTENCE_END = re.compile(r"[?.!;:\n。？！]")
_MARKER = "communication-{ticket_id}@communication.invalid"


class CommunicationNotAnswered(OutboundRefused):
    """The desk does not write to the sender of a communication: the controller answers it (Pexgle §11.2, WECO §12.2)."""


def communication_kind(text: str) -> str | None:
    """What kind of communication `text` is ("authority", "legal", "complaint" about the processing), or None."""
    folded = fold(text[:TEXT_CHARS])
    what = next((what for what, pattern in _PHRASE.items() if pattern.search(folded)), None)
    if what != "complaint":
        return what
    # Line by line for the complaint's own words: a subject line ("Complaint") is not a sentence with the body's first.
    lines = "\n".join(fold(line) for line in text[:TEXT_CHARS].splitlines())
    return what if about_the_processing(lines, [m.end() for m in _PHRASE["complaint"].finditer(lines)]) else None


def is_communication(session: Session, ticket_id: int) -> bool:
    """Whether a ticket holds a communication (its marker note exists; one indexed lookup)."""
    hashes = message_id_digests(session, [_MARKER.format(ticket_id=ticket_id)])
    return bool(hashes) and session.scalar(select(Message.id).where(Message.message_id_bidx == hashes[0])) is not None


def claim_communication(session: Session, inbound: Inbound, *, by: Principal, now: dt.datetime) -> str | None:
    """New privacy mail that is a complaint, an authority's letter or a legal notice (and not a request) is forwarded ("communication")."""
    mail, ticket = inbound.mail, inbound.ticket
    if mail.is_auto_reply or not inbound.new_ticket or inbound.privacy_address.lower() not in mail.recipients:
        return None
    text = f"{mail.subject}\n{mail.body_text}"
    what = communication_kind(text)
    if what is None or classify(text).looks_like_dsr:
        return None  # a request goes through the request handler (its clock, its instructions)
    controller = session.get(Controller, ticket.controller_id) if ticket.controller_id is not None else None
    contacts = [c for c in (controller.contact_emails("dsr") if controller is not None else []) if c]
    outbox_ids = [
        enqueue_email(
            session,
            to=contact,
            subject=f"Communication about the processing of your data ({ticket.reference})",
            body_text=_forward_text(ticket, inbound, what),
            controller_id=ticket.controller_id,
            related_type="ticket",
            related_id=ticket.id,
            kind=KIND,
            msgid_domain=msgid_domain_for({"PRIVACY_ADDRESS": inbound.privacy_address}),
            by=by,
            now=now,
        ).id
        for contact in contacts
    ]
    note = {"code": "communication", "kind": what, "outbox_ids": outbox_ids, "controller_id": ticket.controller_id, "forwarded": bool(outbox_ids)}
    tickets.add_message(
        session,
        ticket,
        tickets.MessageInput(
            direction="note",
            body_text=(
                f"A {what} communication (Pexgle §11.2): forwarded to the controller's DSR contacts at once."
                if outbox_ids
                else f"A {what} communication (Pexgle §11.2): its controller is not known; route the ticket and pass it on at once."
            ),
            message_id=_MARKER.format(ticket_id=ticket.id),
            notes=[note],
        ),
        by=by,
        now=now,
    )
    return "communication"


def _forward_text(ticket: Ticket, inbound: Inbound, what: str) -> str:
    return (
        f"A {what} communication relating to the processing of your data reached our desk ({ticket.reference}).\n"
        "We pass it on without delay as our agreement requires (Pexgle §11.2) and will not answer the sender without your instruction.\n\n"
        f"From: {inbound.mail.from_email}\nSubject: {inbound.mail.subject}\n\n{inbound.mail.body_text[:TEXT_CHARS]}\n"
    )


def communication_policy(session: Session, message: OutboundMessage, *, now: dt.datetime) -> Refusal | None:
    """The outbound policy: on a communication's ticket, email only staff and the controller's contacts (never the sender)."""
    if message.related_type != "ticket" or message.related_id is None or message.kind == KIND:
        return None
    if not is_communication(session, message.related_id):
        return None
    ticket = session.get(Ticket, message.related_id)
    controller = session.get(Controller, ticket.controller_id) if ticket is not None and ticket.controller_id is not None else None
    allowed = {a.lower() for a in (controller.contact_emails("dsr") if controller is not None else [])}
    if message.to.lower() in allowed:
        return None
    if session.scalar(select(User.id).where(User.email == message.to.strip().lower(), User.disabled_at.is_(None))) is not None:
        return None
    return Refusal(
        reason="communication",
        error=CommunicationNotAnswered(f"ticket {message.related_id} holds a communication for the controller: the desk does not answer its sender"),
        targets=(("ticket", message.related_id),),
        audit_action="dsr.reply_refused",
        details={"kind": message.kind, "related_type": "ticket", "related_id": message.related_id, "communication": True},
    )
