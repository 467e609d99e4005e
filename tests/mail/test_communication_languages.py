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
    ("complaint", "Reclamação", "Quero apresentar uma reclamação sobre o atendimento do meu pedido."),
    ("authority", "Ofício", "A Comissão Nacional de Proteção de Dados recebeu uma queixa sobre o vosso tratamento."),
    ("complaint", "Klagomål", "Jag vill lämna ett klagomål om hur mitt ärende hanterades."),
    ("authority", "Tillsyn", "Integritetsskyddsmyndigheten (IMY) har inlett ett tillsynsärende."),
    ("authority", "Henvendelse", "Datatilsynet har modtaget en klage over jeres behandling af personoplysninger."),
    ("complaint", "Stížnost", "Chci podat stížnost na vyřízení mého požadavku."),
    ("complaint", "Valitus", "Haluan tehdä valituksen asiakaspalvelun toiminnasta."),
    ("complaint", "Şikayet", "Destek ekibinizin davranışı hakkında şikayette bulunmak istiyorum."),
    ("authority", "Anhörung", "Das Bayerische Landesamt für Datenschutzaufsicht hat eine Beschwerde erhalten."),
    ("legal", "Abmahnung", "Namens und in Vollmacht unserer Mandantin mahnen wir Sie hiermit ab."),
    ("legal", "Avocat", "Je vous écris en qualité d'avocat de Mme Durand au sujet de son dossier."),
    ("legal", "Requerimiento", "En representación de mi cliente, le requerimos que cese el tratamiento."),
    ("legal", "Ingebrekestelling", "Namens mijn cliënt stel ik u hierbij in gebreke."),
    ("complaint", "Жалоба", "Я хочу подать жалобу на работу вашей службы поддержки."),
    ("complaint", "苦情", "サポートの対応について苦情を申し上げます。"),
    ("legal", "律师函", "本律师受当事人委托，就贵公司处理其个人信息一事致函。"),
    ("complaint", "Réclamation", "Je dépose une réclamation concernant le traitement de ma demande : mes données ont été divulguées."),
    ("complaint", "Skarga", "Składam skargę: moje dane osobowe zostały ujawnione przez Wasz dział obsługi."),
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
