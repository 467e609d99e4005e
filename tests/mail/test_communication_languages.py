"""Pexgle §11.2 in the languages the desk's subjects and authorities write: a complaint, an authority's letter or a
lawyer's notice to the privacy address is a communication forwarded to the controller, never a request with an
acknowledgement to its sender; a request or a plain question is not mistaken for one."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.dsr.communication import KIND, communication_kind
from app.mail.models import OutboxEmail
from tests.mail.test_cases import acme, mail_requests
from tests.mail.test_real_world import _privacy_mail, acks, ingest

COMMUNICATIONS = [
    # (kind, subject, body)
    ("complaint", "Complaint", "I am writing to lodge a complaint about the way your agent handled my ticket last week."),
    ("authority", "ICO reference IC-12345-A1B2", "The Information Commissioner's Office has received a complaint about your processing."),
    ("authority", "Case DPC-2026-118", "The DPC is examining a complaint under Article 77 GDPR concerning your organisation."),
    ("legal", "Notice of claim", "We act for Mr John Smith. This is a letter before claim concerning the disclosure of his data."),
    ("legal", "Cease and desist", "Our client will start legal proceedings unless you answer within 7 days. Smith & Partners, attorneys at law"),
    ("complaint", "Reclamo", "Desidero presentare un reclamo per come è stato gestito il mio ticket."),
    ("legal", "Diffida", "Per conto del mio cliente, con la presente diffidiamo la Vostra società dal trattare i suoi dati."),
    ("complaint", "Skarga", "Chcę złożyć skargę na sposób obsługi mojego zgłoszenia."),
    ("authority", "Pismo", "Prezes Urzędu Ochrony Danych Osobowych informuje o wszczęciu postępowania."),
    ("complaint", "Reclamação", "Quero apresentar uma reclamação sobre a forma como o meu pedido foi tratado."),
    ("authority", "Ofício", "A Comissão Nacional de Proteção de Dados recebeu uma queixa sobre o vosso tratamento."),
    ("complaint", "Klagomål", "Jag vill lämna ett klagomål om hur mitt ärende hanterades."),
    ("authority", "Tillsyn", "Integritetsskyddsmyndigheten (IMY) har inlett ett tillsynsärende."),
    ("authority", "Henvendelse", "Datatilsynet har modtaget en klage over jeres behandling af personoplysninger."),
    ("complaint", "Stížnost", "Chci podat stížnost na vyřízení mého požadavku."),
    ("complaint", "Valitus", "Haluan tehdä valituksen siitä, miten pyyntöni käsiteltiin."),
    ("complaint", "Şikayet", "Talebimin nasıl ele alındığı hakkında şikayette bulunmak istiyorum."),
    ("authority", "Anhörung", "Das Bayerische Landesamt für Datenschutzaufsicht hat eine Beschwerde erhalten."),
    ("legal", "Abmahnung", "Namens und in Vollmacht unserer Mandantin mahnen wir Sie hiermit ab."),
    ("legal", "Avocat", "Je vous écris en qualité d'avocat de Mme Durand au sujet de son dossier."),
    ("legal", "Requerimiento", "En representación de mi cliente, le requerimos que cese el tratamiento."),
    ("legal", "Ingebrekestelling", "Namens mijn cliënt stel ik u hierbij in gebreke."),
    ("complaint", "Жалоба", "Я хочу подать жалобу на то, как было обработано моё обращение."),
    ("complaint", "苦情", "お問い合わせへの対応について苦情を申し上げます。"),
    ("legal", "律师函", "本律师受当事人委托，就贵公司处理其个人信息一事致函。"),
    ("complaint", "Réclamation", "Je dépose une réclamation concernant le traitement de ma demande : mes données ont été divulguées."),
    ("complaint", "Skarga", "Składam skargę: moje dane osobowe zostały ujawnione przez Wasz dział obsługi."),
    ("complaint", "Unacceptable", "I never gave you consent to share my phone number with a marketing company. I am filing a complaint."),
    ("complaint", "Klacht", "Ik dien een klacht in omdat jullie mijn persoonsgegevens zonder toestemming met derden hebben gedeeld."),
    ("complaint", "Καταγγελία", "Υποβάλλω καταγγελία επειδή κοινοποιήσατε τα προσωπικά μου δεδομένα σε τρίτους χωρίς συναίνεση."),
    ("complaint", "Plângere", "Depun o plângere pentru că ați transmis datele mele personale unor terți fără acord."),
    ("complaint", "민원", "동의 없이 제 개인정보를 제3자에게 제공한 것에 대해 민원을 제기합니다."),
    ("complaint", "شكوى", "أتقدم بشكوى لأنكم شاركتم بياناتي الشخصية مع طرف ثالث دون موافقتي."),
    ("authority", "ANSPDCP", "Autoritatea Națională de Supraveghere a Prelucrării Datelor cu Caracter Personal a primit o plângere."),
    ("authority", "Αρχή Προστασίας Δεδομένων", "Η Αρχή Προστασίας Δεδομένων Προσωπικού Χαρακτήρα έλαβε καταγγελία για την εταιρεία σας."),
    ("complaint", "Klagomål", "Klagomål: mitt ärende om den trasiga diskmaskinen har inte hanterats på tre veckor."),
]
NOT_COMMUNICATIONS = [
    ("Where is my parcel?", "My parcel 4471 has not arrived. Can you check?"),
    ("Delete my data", "Please delete my personal data and my account (GDPR article 17)."),
    ("Selected products", "Valitut tuotteet eivät ole saapuneet."),  # Finnish "selected", not "valitus"
    ("Avocado", "The avocado in my order was not ripe."),
    ("Mandatory fields", "Which fields of the form are mandatory?"),
    ("Icon", "The icon on your page is broken."),
    # complaints about a product or a delivery, not about the processing (Pexgle §11.2 is about the processing)
    ("Complaint", "The Nordlicht Reisen app (NL-42) keeps crashing when I log in."),
    ("Beschwerde", "Mein Paket (NL-42) ist nicht angekommen."),
    ("Late parcel", "My parcel is two weeks late and I want to complain to the manager."),
    ("Reclamación", "El pedido llegó roto."),
    ("Klacht", "Mijn pakket is beschadigd."),
    ("苦情", "荷物が壊れていました。"),
    # complaints about products and service that use everyday words (processing, handling, data, request, ticket):
    # found by a tester; a complaint about how a request was *handled* stays a communication (the example)
    ("Complaint about order processing", "I want to complain: order processing took 10 days and the parcel still hasn't shipped. Order 7781."),
    ("Complaint - handling fee", "I'm complaining about the handling fee of 4.99 on order 2231, it wasn't shown at checkout."),
    ("Complaint", "My refund request for the broken kettle has been ignored for three weeks. I want to complain."),
    ("Complaint: mobile data", "I complain because my mobile data stopped working after your SIM swap, I can't use the internet."),
    ("Formal complaint", "This is a formal complaint: the replacement phone you sent was also faulty. Ticket T-2026-1182."),
    ("Beschwerde", "Ich beschwere mich über die lange Bearbeitung meiner Bestellung 4412, jetzt schon drei Wochen."),
    ("Beschwerde Rücksendung", "Meine Anfrage zur Rücksendung des defekten Toasters wurde nicht beantwortet, ich möchte mich beschweren."),
    ("Réclamation", "Réclamation : ma demande de remboursement pour le colis perdu n'a toujours pas de réponse."),
    ("Queja", "Presento una queja: mi solicitud de devolución del televisor roto sigue sin respuesta."),
    ("Reclamo", "Reclamo: la mia richiesta di rimborso per il pacco danneggiato è ferma da un mese."),
    ("Reclamação", "Reclamação sobre o atendimento: o produto chegou avariado e ninguém responde."),
    ("Skarga", "Skarga: moje zgłoszenie reklamacyjne dotyczące pralki leży od miesiąca bez odpowiedzi."),
    ("苦情", "注文した商品が届きません。早急に対応してください。"),
    ("投诉", "我要投诉，快递三天没动，请尽快处理。"),
    ("Şikayet", "Siparişim gelmedi, iade talebime de cevap verilmedi, şikayet ediyorum."),
    ("Valitus", "Valitus: asiakaspalvelu ei ole vastannut rikkinäisestä puhelimesta."),
]


@pytest.mark.parametrize(("kind", "subject", "body"), COMMUNICATIONS, ids=[c[1] for c in COMMUNICATIONS])
def test_a_communication_in_any_of_the_languages_is_recognised_by_its_kind(kind: str, subject: str, body: str) -> None:
    assert communication_kind(f"{subject}\n{body}") == kind


@pytest.mark.parametrize(("subject", "body"), NOT_COMMUNICATIONS, ids=[c[0] for c in NOT_COMMUNICATIONS])
def test_a_question_or_a_request_is_not_taken_for_a_communication(subject: str, body: str) -> None:
    assert communication_kind(f"{subject}\n{body}") is None


@pytest.mark.parametrize(("kind", "subject", "body"), COMMUNICATIONS[::4], ids=[c[1] for c in COMMUNICATIONS[::4]])
def test_such_mail_to_the_privacy_address_is_forwarded_to_the_controller_and_opens_no_request(session: Session, kind: str, subject: str, body: str) -> None:
    # Given a controller with a DSR contact and a standing neutral acknowledgement
    acme(session)
    # When the communication reaches the privacy address
    outcome = ingest(session, _privacy_mail("Ann <ann@acme.example>", subject, body, f"c-{kind}@x"))
    # Then it goes to the controller's DSR contact at once, and the sender gets nothing: no request, no acknowledgement
    assert outcome.claim is not None and outcome.claim.code == "communication"
    assert len(mail_requests(session)) == 0 and acks(session) == 0
    [forward] = session.scalars(select(OutboxEmail).where(OutboxEmail.kind == KIND))
    assert forward.to_addr == "dpo@acme.example" and forward.related_id == outcome.ticket_id
