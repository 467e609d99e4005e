"""Further cases of each kind in issue 11 (other languages, charsets, loop shapes, DSN formats), and CPython's email corpus.

The shared cases themselves are in tests/mail/test_cases.py; the set-up (Acme, its standing acknowledgement,
privacy@ and support@desk.example) is the same.
"""

from __future__ import annotations

import datetime as dt
import sys
import sysconfig
from email.header import Header
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.dsr.models import Dsr
from app.mail import quarantine
from app.mail.autoreply import AUTO_SUBJECT_PREFIXES, subject_is_automatic
from app.mail.decode import codec_for, decode_bytes, unflow
from app.mail.dsn import verp_local
from app.mail.inbound import IngestOutcome, ingest_message
from app.mail.models import OutboxEmail
from app.mail.parse import parse_mail
from app.mail.ratelimit import AutoReplyLimit
from app.tickets.models import Attachment, Message, Ticket
from tests.factories import TEST_PRINCIPAL
from tests.mail.test_cases import NOW, SETTINGS, acme, count, mail_requests

LIMIT = 25 * 1024 * 1024


def ingest(session: Session, raw: bytes, minutes: int = 5) -> IngestOutcome:
    return ingest_message(session, raw, settings=SETTINGS, by=TEST_PRINCIPAL, now=NOW + dt.timedelta(minutes=minutes))


def request_with_ack(session: Session, sender: str = "Ann Archer <ann@acme.example>", msgid: str = "seed@mail.acme.example") -> OutboxEmail:
    """Acme, a request by mail from `sender`, and the acknowledgement it queued (returned)."""
    acme(session)
    raw = f"From: {sender}\r\nTo: privacy@desk.example\r\nSubject: Please delete my account\r\nMessage-ID: <{msgid}>\r\n\r\nPlease delete my data.\r\n"
    ingest(session, raw.encode(), minutes=0)
    ack = session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "acknowledgement")).one()
    return ack


def acks(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(OutboxEmail).where(OutboxEmail.kind == "acknowledgement")) or 0)


# --- 1. no message lost for its content ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "name"),
    [
        ("Запрос на удаление данных".encode(), "Пётр Иванов".encode()),  # Russian, RFC 6532 UTF-8
        ("データ削除のお願い".encode(), "山田 太郎".encode()),  # Japanese
        ("Prośba o usunięcie".encode("iso-8859-2"), "Łukasz Żółw".encode("iso-8859-2")),  # raw legacy bytes, no label
        (b"Caf\xe9 \xff\xfe broken", b"J\xfcrgen \x80\x81"),  # undecodable junk
    ],
)
def test_raw_8bit_headers_of_any_kind_are_stored_as_text(session: Session, subject: bytes, name: bytes) -> None:
    raw = b"From: " + name + b" <p@acme.example>\r\nTo: support@desk.example\r\nSubject: " + subject + b"\r\nMessage-ID: <h8@x>\r\n\r\nbody\r\n"
    acme(session)
    outcome = ingest(session, raw)
    assert outcome.status == "stored"
    ticket = session.get(Ticket, outcome.ticket_id)
    assert ticket is not None and ticket.subject and ticket.requester_name
    for text in (ticket.subject, ticket.requester_name):
        text.encode("utf-8")  # no lone surrogate: it was encrypted and read back
    if subject.startswith("Запрос".encode()):
        assert ticket.subject == "Запрос на удаление данных" and ticket.requester_name == "Пётр Иванов"


def test_an_ingest_fault_in_the_desk_holds_the_message_instead_of_asking_the_mta_to_retry(session: Session) -> None:
    from app.mail.inbound import is_temporary

    assert not is_temporary(UnicodeEncodeError("utf-8", "x", 0, 1, "surrogates not allowed"))
    assert is_temporary(OSError("disk full"))


# --- 2. reused Message-IDs ---------------------------------------------------------------------------------------


def test_a_stranger_under_a_stored_message_id_is_kept_on_a_thread_of_its_own_not_dropped(session: Session) -> None:
    acme(session)
    first = ingest(session, b"From: a@acme.example\r\nTo: support@desk.example\r\nSubject: One\r\nMessage-ID: <same@x>\r\n\r\nfirst\r\n")
    second = ingest(session, b"From: b@elsewhere.example\r\nTo: support@desk.example\r\nSubject: Two\r\nMessage-ID: <same@x>\r\n\r\nsecond\r\n")
    # Stored and noted as a reused id, but not on a's thread: whoever sent first under an id must not take in another's mail
    assert second.status == "stored" and second.new_ticket and second.ticket_id != first.ticket_id
    message = session.get(Message, second.message_pk)
    assert message is not None and {"code": "reused_message_id", "first_message": first.message_pk} in (message.notes or [])
    assert count(session, Message) == 2


def test_a_squatted_message_id_does_not_take_a_subjects_request(session: Session) -> None:
    # Given a stranger who sent first under the Message-ID the subject's mail client will use
    acme(session)
    squat = ingest(session, b"From: mallory@elsewhere.example\r\nTo: privacy@desk.example\r\nSubject: Hi\r\nMessage-ID: <req-1@acme.example>\r\n\r\nhi\r\n")
    # When the subject's erasure request arrives under that id
    raw = (
        b"From: Sam <sam@acme.example>\r\nTo: privacy@desk.example\r\nSubject: Delete my data\r\n"
        b"Message-ID: <req-1@acme.example>\r\n\r\nPlease erase all my personal data.\r\n"
    )
    request = ingest(session, raw, minutes=5)
    # Then it opens the subject's own ticket and request, with its own clock
    assert request.status == "stored" and request.new_ticket and request.ticket_id != squat.ticket_id
    assert request.claim is not None and request.claim.code == "dsr"
    # And a stranger reusing the subject's id afterwards does not join the subject's ticket either
    again = b"From: eve@elsewhere.example\r\nTo: privacy@desk.example\r\nSubject: x\r\nMessage-ID: <req-1@acme.example>\r\n\r\nother text\r\n"
    assert ingest(session, again, minutes=9).ticket_id not in (request.ticket_id, None)


# --- 3. loops ----------------------------------------------------------------------------------------------------


def test_a_helpdesk_acknowledgement_quoting_our_reference_without_in_reply_to_opens_no_request(session: Session) -> None:
    # Given a request whose acknowledgement went out
    request_with_ack(session)
    dsr = mail_requests(session)[0]
    # When another helpdesk answers it with a subject that quotes our reference, no threading headers, no auto headers
    raw = (
        f"From: Service Desk <desk@helpdesk.example>\r\nTo: privacy@desk.example\r\nSubject: [Case 4471] Your request {dsr.reference}\r\n"
        "Message-ID: <case-4471@helpdesk.example>\r\n\r\nWe will get back to you.\r\n"
    ).encode()
    outcome = ingest(session, raw)
    # Then no second request and no second acknowledgement
    assert len(mail_requests(session)) == 1 and acks(session) == 1
    assert outcome.status == "stored"


def test_the_subject_answering_by_reference_only_joins_the_requests_ticket(session: Session) -> None:
    request_with_ack(session)
    dsr = mail_requests(session)[0]
    raw = f"From: ann@acme.example\r\nTo: privacy@desk.example\r\nSubject: AW: Ihre Anfrage {dsr.reference}\r\nMessage-ID: <aw1@x>\r\n\r\nDanke.\r\n"
    outcome = ingest(session, raw.encode())
    assert (outcome.ticket_id, outcome.how, outcome.new_ticket) == (dsr.ticket_id, "domain_reference", False)
    assert len(mail_requests(session)) == 1 and acks(session) == 1


def test_a_reply_to_our_acknowledgement_by_its_plus_token_address_joins_the_ticket(session: Session) -> None:
    request_with_ack(session)
    ticket = session.scalars(select(Ticket)).one()
    raw = f"From: ann@acme.example\r\nTo: support+{ticket.reply_token}@desk.example\r\nSubject: more\r\nMessage-ID: <tok1@x>\r\n\r\nAnd more.\r\n"
    outcome = ingest(session, raw.encode())
    assert outcome.ticket_id == ticket.id and outcome.how == "reply_token" and len(mail_requests(session)) == 1


def test_an_auto_reply_referencing_our_acknowledgement_in_references_only_joins_and_sends_nothing(session: Session) -> None:
    ack = request_with_ack(session)
    raw = (
        "From: Ann <ann@acme.example>\r\nTo: privacy@desk.example\r\nSubject: Automatische Antwort: Your request\r\n"
        f"Message-ID: <oof1@x>\r\nReferences: <older@x> {ack.message_id}\r\nAuto-Submitted: auto-replied\r\n\r\nIch bin nicht im Büro.\r\n"
    ).encode()
    outcome = ingest(session, raw)
    assert not outcome.new_ticket and len(mail_requests(session)) == 1 and acks(session) == 1


@pytest.mark.parametrize("sender", ["privacy@desk.example", "support@desk.example", "Desk <PRIVACY+bounce-abc@desk.example>", "support+t0k3n@desk.example"])
def test_mail_from_the_desks_own_addresses_never_opens_a_ticket(session: Session, sender: str) -> None:
    acme(session)
    raw = f"From: {sender}\r\nTo: privacy@desk.example\r\nSubject: Please delete my data\r\nMessage-ID: <own@x>\r\n\r\nDelete my data.\r\n".encode()
    outcome = ingest(session, raw)
    assert (outcome.status, outcome.reason, outcome.exit_code) == ("quarantined", "from_own_address", 0)
    assert count(session, Ticket) == 0 and len(mail_requests(session)) == 0


AUTO_SUBJECTS = [
    "Automatic reply: Your request",
    "Automatische Antwort: Ihre Anfrage",
    "Réponse automatique : votre demande",
    "Respuesta automática: su solicitud",
    "Risposta automatica: la sua richiesta",
    "Automatisch antwoord: uw verzoek",
    "Resposta automática: o seu pedido",
    "Automatyczna odpowiedź: Twoje zgłoszenie",
    "Autosvar: din förfrågan",
    "Automaattinen vastaus: pyyntösi",
    "Automatická odpověď: váš požadavek",
    "Automatikus válasz: kérése",
    "Răspuns automat: cererea dvs.",
    "Αυτόματη απάντηση: το αίτημά σας",
    "Автоматический ответ: ваш запрос",
    "Otomatik yanıt: talebiniz",
    "自动回复: 您的请求",
    "自動応答: お問い合わせ",
    "자동 응답: 요청",
    "[Ticket #88412] Ticket Received - Your request",
]


@pytest.mark.parametrize("subject", AUTO_SUBJECTS)
def test_auto_reply_subjects_in_many_languages_are_recognised(subject: str) -> None:
    assert subject_is_automatic(subject)
    raw = f"From: x@acme.example\r\nTo: privacy@desk.example\r\nSubject: {Header(subject, 'utf-8').encode()}\r\nMessage-ID: <a@x>\r\n\r\nhi\r\n"
    mail = parse_mail(raw.encode(), attachment_max_bytes=LIMIT)
    assert mail.is_auto_reply and "auto:automatic_subject" in mail.flags


def test_at_least_twelve_languages_have_auto_reply_prefixes_and_peoples_subjects_are_not_caught() -> None:
    assert len(AUTO_SUBJECT_PREFIXES) >= 12
    for subject in ("Please delete my account", "Re: Your request DSR-2026-000001", "Frage zur Rückerstattung", "Reply to my complaint"):
        assert not subject_is_automatic(subject)


@pytest.mark.parametrize(
    "header",
    ["Auto-Submitted: auto-generated", "X-Autoreply: yes", "X-Autorespond: 1", "X-Auto-Response-Suppress: All", "Precedence: junk", "List-Id: <l.x>"],
)
def test_automatic_mail_headers_open_no_request(session: Session, header: str) -> None:
    acme(session)
    raw = f"From: robot@acme.example\r\nTo: privacy@desk.example\r\nSubject: Hello\r\nMessage-ID: <h@x>\r\n{header}\r\n\r\nPlease delete my data.\r\n"
    ingest(session, raw.encode())
    assert len(mail_requests(session)) == 0 and acks(session) == 0


def test_a_robot_that_looks_like_a_person_gets_one_acknowledgement_per_window(session: Session) -> None:
    # Given a request from a robot address whose acknowledgement went out
    request_with_ack(session, sender="tickets@helpdesk.acme.example", msgid="r1@robot.example")
    # When it writes again (a new request each time, as a person would) within 24 hours
    for n in range(2, 5):
        raw = f"From: tickets@helpdesk.acme.example\r\nTo: privacy@desk.example\r\nSubject: New case {n}\r\nMessage-ID: <r{n}@x>\r\n\r\nDelete.\r\n"
        ingest(session, raw.encode(), minutes=n)
    # Then only the first acknowledgement was queued
    assert acks(session) == 1


def test_the_auto_reply_limit_is_configurable() -> None:
    limit = AutoReplyLimit.from_config({"AUTO_REPLY_LIMIT": "3", "AUTO_REPLY_WINDOW_HOURS": "6"})
    assert (limit.limit, limit.window) == (3, dt.timedelta(hours=6))
    assert AutoReplyLimit.from_config({}).limit == 1 and AutoReplyLimit.from_config({}).window == dt.timedelta(hours=24)
    with pytest.raises(ValueError):
        AutoReplyLimit.from_config({"AUTO_REPLY_LIMIT": "-1"})


# --- 4. bounces --------------------------------------------------------------------------------------------------


def _dsn(returned: str, *, status: str = "5.1.1", action: str = "failed", to: str = "privacy@desk.example", kind: str = "message/rfc822") -> bytes:
    return (
        "Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.example\r\nTo: " + to + "\r\nSubject: Delivery Status Notification (Failure)\r\n"
        "Message-ID: <dsn-" + status + action + "@mx.example>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type="delivery-status"; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n"
        f"Final-Recipient: rfc822; ann@acme.example\r\nAction: {action}\r\nStatus: {status}\r\nDiagnostic-Code: smtp; 550 {status} no such user\r\n\r\n"
        f"--B\r\nContent-Type: {kind}\r\n\r\n{returned}\r\n--B--\r\n"
    ).encode()


def test_a_dsn_returning_only_the_headers_marks_the_row(session: Session) -> None:
    ack = request_with_ack(session)
    outcome = ingest(session, _dsn(f"From: privacy@desk.example\r\nMessage-ID: {ack.message_id}\r\n", kind="text/rfc822-headers"))
    assert outcome.status == "bounce" and outcome.exit_code == 0
    assert (ack.state, ack.bounce_status) == ("bounced", "5.1.1") and "no such user" in (ack.bounce_diagnostic or "")
    assert count(session, Ticket) == 1 and count(session, Attachment) == 0


def test_a_dsn_to_the_verp_address_marks_the_row_without_any_returned_message(session: Session) -> None:
    ack = request_with_ack(session)
    verp = verp_local("privacy", ack.message_id) + "@desk.example"
    outcome = ingest(session, _dsn("(the original message is not included)", status="5.7.1", to=verp, kind="text/plain"))
    assert outcome.status == "bounce" and ack.state == "bounced" and ack.bounce_status == "5.7.1"


def test_a_delay_notice_records_the_status_but_is_not_a_bounce(session: Session) -> None:
    ack = request_with_ack(session)
    ingest(session, _dsn(f"Message-ID: {ack.message_id}\r\n", status="4.4.7", action="delayed", kind="text/rfc822-headers"))
    assert ack.state != "bounced" and ack.bounce_status == "4.4.7"


def test_a_bounce_naming_nothing_we_sent_is_held_silently(session: Session) -> None:
    acme(session)
    outcome = ingest(session, _dsn("Message-ID: <not-ours@elsewhere.example>\r\n", kind="text/rfc822-headers"))
    assert (outcome.status, outcome.reason, outcome.exit_code) == ("quarantined", "bounce_unmatched", 0)
    assert count(session, Ticket) == 0
    assert session.get(quarantine.QuarantinedMessage, outcome.quarantine_id) is not None


# --- 5. text comes out right --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "codec"),
    [
        ("gb2312", "gb18030"),
        ("GBK", "gb18030"),
        ("iso-8859-1", "cp1252"),
        ("us-ascii", "cp1252"),
        ("ks_c_5601-1987", "cp949"),
        ("latin1", "cp1252"),
        ("shift_jis", "cp932"),
        ("x-made-up", None),
    ],
)
def test_charset_labels_follow_the_whatwg_table(label: str, codec: str | None) -> None:
    assert codec_for(label) == codec


@pytest.mark.parametrize(
    ("text", "label", "encoding"),
    [
        ("Smart “quotes” – and €uro", "iso-8859-1", "cp1252"),  # labelled latin-1, really windows-1252
        ("개인정보 삭제를 요청합니다. 똠방각하", "ks_c_5601-1987", "cp949"),  # Korean, UHC-only syllable
        ("Bitte löschen Sie meine Daten", "us-ascii", "cp1252"),  # labelled ASCII, 8-bit inside
        ("Здравствуйте! Прошу удалить все мои персональные данные из вашей системы.", None, "koi8-r"),  # unlabelled KOI8-R
        ("Здравствуйте! Прошу удалить все мои персональные данные из вашей системы.", None, "cp1251"),  # unlabelled windows-1251
        ("こんにちは、私のデータを削除してください。", None, "shift_jis"),  # unlabelled Shift_JIS
        ("个人信息删除请求，请删除我的所有数据。", None, "gb18030"),  # unlabelled GB18030
        ("Kérem, töröljék az összes személyes adatomat a rendszerből.", "iso-8859-2", "iso-8859-2"),  # Hungarian, labelled
    ],
)
def test_bodies_decode_as_browsers_would(text: str, label: str | None, encoding: str) -> None:
    decoded, _note = decode_bytes(text.encode(encoding), label)
    assert decoded == text


def test_an_undecodable_body_is_replaced_not_refused() -> None:
    decoded, _ = decode_bytes(b"abc \x81\x82 def", "utf-8")
    assert decoded.startswith("abc ") and "\ufffd" in decoded


def test_format_flowed_without_delsp_keeps_the_space_and_quote_depths_apart() -> None:
    assert unflow("Bonjour, voici une \nligne longue.\n> cité \n> encore\nfin", delsp=False) == "Bonjour, voici une ligne longue.\n> cité encore\nfin"
    assert unflow("-- \nsignature", delsp=False) == "-- \nsignature"


def test_a_flowed_body_is_unwrapped_at_ingest(session: Session) -> None:
    acme(session)
    raw = (
        b"From: p@acme.example\r\nTo: support@desk.example\r\nSubject: Lien\r\nMessage-ID: <ff@x>\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1; format=flowed\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    ) + "Le fichier est sur \r\nhttps://files.acme.example/a \r\nb.csv (voilà).\r\n".encode("latin-1")
    message = session.get(Message, ingest(session, raw).message_pk)
    assert message is not None and message.body_text is not None
    assert "Le fichier est sur https://files.acme.example/a b.csv (voilà)." in message.body_text


def test_an_invite_inside_a_mixed_message_is_an_ics_attachment_and_noted(session: Session) -> None:
    acme(session)
    ics = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:Réunion\\, RGPD\r\nDTSTART;TZID=Europe/Paris:20261203T090000\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    raw = (
        "From: p@acme.example\r\nTo: support@desk.example\r\nSubject: Invitation\r\nMessage-ID: <inv@x>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="A"\r\n\r\n--A\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee invite.\r\n'
        f"--A\r\nContent-Type: text/calendar; charset=utf-8; method=REQUEST\r\n\r\n{ics}--A--\r\n"
    ).encode()
    message = session.get(Message, ingest(session, raw).message_pk)
    assert message is not None and [a.filename for a in message.attachments] == ["invitation.ics"]
    assert message.body_text is not None and message.body_text.startswith("Invitation: Réunion, RGPD\nWhen: 2026-12-03 09:00")
    assert "invitation" in (message.flags or [])


def test_an_inline_image_shows_on_the_ticket_page(session: Session, client, auth) -> None:  # type: ignore[no-untyped-def]
    from tests.mail.test_cases import run_case

    outcome = run_case(session, "19-cid-inline-image")
    auth.login("privacy_officer")
    page = client.get(f"/tickets/{outcome.ticket_id}").get_data(as_text=True)
    image = session.scalars(select(Attachment)).one()
    assert f'src="/tickets/{outcome.ticket_id}/attachments/{image.id}"' in page
    assert client.get(f"/tickets/{outcome.ticket_id}/attachments/{image.id}").status_code == 200


# --- CPython's email test corpus ----------------------------------------------------------------------------------


def _cpython_corpus() -> list[Path]:
    places = [Path(sysconfig.get_paths()["stdlib"]) / "test" / "test_email" / "data"]
    places += sorted(Path("/root/.pyenv/versions").glob(f"*/lib/python{sys.version_info.major}.{sys.version_info.minor}/test/test_email/data"))
    places.append(Path(f"/usr/lib/python{sys.version_info.major}.{sys.version_info.minor}/test/test_email/data"))
    for place in places:
        files = sorted(place.glob("msg_*.txt"))
        if files:
            return files
    return []


CPYTHON_CORPUS = _cpython_corpus()


def test_the_cpython_email_corpus_is_here() -> None:
    assert len(CPYTHON_CORPUS) >= 40, "CPython's test/test_email/data is missing (Debian: libpython3.11-testsuite)"


@pytest.mark.parametrize("path", CPYTHON_CORPUS, ids=lambda p: p.name)
def test_every_message_of_the_cpython_corpus_goes_through_ingest(session: Session, path: Path) -> None:
    acme(session)
    outcome = ingest(session, path.read_bytes())  # raising here is the traceback the issue forbids
    assert outcome.exit_code in (0, 65)
    assert outcome.reason != "unprocessable"


def test_a_bounced_forward_to_the_controller_escalates_the_request_at_once(session: Session) -> None:
    from app.dsr import forward as dsr_forward
    from app.dsr.models import DsrEvent
    from app.dsr.settings import DsrSettings
    from tests.factories import make_user

    # Given a privacy officer and a request forwarded to Acme's DSR contact
    officer = make_user(session, "privacy_officer")
    request_with_ack(session)
    dsr = mail_requests(session)[0]
    dsr_forward.forward(session, dsr.id, settings=DsrSettings("privacy@desk.example", "desk.example"), by=TEST_PRINCIPAL, now=NOW)
    sent = session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "dsr_forward")).one()
    # When the controller's mail server returns it
    outcome = ingest(session, _dsn(f"Message-ID: {sent.message_id}\r\n", status="5.2.1", kind="text/rfc822-headers"), minutes=20)
    # Then the forward's row is bounced, no ticket was opened, and the officers were told at once
    assert outcome.status == "bounce" and sent.state == "bounced" and sent.bounce_status == "5.2.1"
    assert "[address]" in (sent.bounce_diagnostic or "") or "@" not in (sent.bounce_diagnostic or "")
    assert count(session, Ticket) == 1
    alerts = list(session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "dsr_escalation")))
    assert [a.to_addr for a in alerts] == [officer.email] and all(a.related_id == dsr.id for a in alerts)
    session.refresh(dsr)
    assert dsr.escalated_at is not None
    events = [e for e in session.scalars(select(DsrEvent).where(DsrEvent.dsr_id == dsr.id)) if e.code == "forward_refused"]
    assert events and events[-1].details["outcome"] == "bounced"


def test_the_outbox_return_path_names_its_row_and_a_bounce_to_it_is_read_back() -> None:
    from app.mail.dsn import return_path, verp_tokens

    message_id = "<0123456789abcdef0123456789abcdef.20261130100000@desk.example>"
    address = return_path("privacy@desk.example", message_id)
    assert address == "privacy+bounce-0123456789abcdef0123456789abcdef@desk.example"
    assert verp_tokens([address.upper().lower()]) == ["0123456789abcdef0123456789abcdef"]
    assert return_path("privacy@desk.example", "<not-an-outbox-id@x>") == "privacy@desk.example"


# --- 6. one address, done right ------------------------------------------------------------------------------------


def test_on_a_single_address_a_parcel_question_is_a_ticket_and_a_request_is_a_request(session: Session) -> None:
    from app.dsr.models import DsrSuggestion
    from app.dsr.requests import DsrInput, create_from_ticket
    from app.mail.inbound import IngestSettings

    # Given the desk on one address, as with SUPPORT_ADDRESS unset
    single = IngestSettings.from_config({"PRIVACY_ADDRESS": "privacy@desk.example"})
    assert single.support_address == single.dsr_address == "privacy@desk.example"
    acme(session)

    def mail(msgid: str, subject: str, body: str) -> IngestOutcome:
        raw = f"From: Ann <ann@acme.example>\r\nTo: privacy@desk.example\r\nSubject: {subject}\r\nMessage-ID: <{msgid}>\r\n\r\n{body}\r\n".encode()
        return ingest_message(session, raw, settings=single, by=TEST_PRINCIPAL, now=NOW)

    # When a parcel question arrives, then it is a ticket: no request, no forward, no acknowledgement
    parcel = mail("p1@x", "Where is my parcel?", "My parcel 4471 has not arrived. Can you check?")
    assert parcel.status == "stored" and len(mail_requests(session)) == 0 and count(session, OutboxEmail) == 0
    # When a request arrives, then it opens one (and its acknowledgement is queued)
    request = mail("p2@x", "Delete my data", "Please delete my personal data and my account (GDPR article 17).")
    assert session.scalars(select(Dsr).where(Dsr.ticket_id == request.ticket_id)).one().received_at == NOW
    # And a question that reads like a request only in part is a ticket with the classifier's suggestion
    hinted = mail("p3@x", "Question", "What personal data do you keep about my orders? Could you send me a copy of my data?")
    if session.scalars(select(Dsr).where(Dsr.ticket_id == hinted.ticket_id)).first() is None:
        assert session.scalars(select(DsrSuggestion).where(DsrSuggestion.ticket_id == hinted.ticket_id)).first() is not None
    # And a request staff make later from the parcel ticket keeps the clock of its first message
    later = create_from_ticket(
        session, parcel.ticket_id or 0, DsrInput(types=["access"], subject_email="ann@acme.example"), by=TEST_PRINCIPAL, now=NOW + dt.timedelta(hours=5)
    )
    assert later.received_at == NOW and later.due_at == NOW + dt.timedelta(hours=24)


def test_with_two_addresses_every_new_message_to_the_privacy_address_is_still_a_request(session: Session) -> None:
    acme(session)
    raw = b"From: ann@acme.example\r\nTo: privacy@desk.example\r\nSubject: Hello\r\nMessage-ID: <two@x>\r\n\r\nWhere is my parcel?\r\n"
    outcome = ingest(session, raw)
    assert session.scalars(select(Dsr).where(Dsr.ticket_id == outcome.ticket_id)).one() is not None


def _privacy_mail(sender: str, subject: str, body: str, msgid: str) -> bytes:
    return f"From: {sender}\r\nTo: privacy@desk.example\r\nSubject: {subject}\r\nMessage-ID: <{msgid}>\r\n\r\n{body}\r\n".encode()


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        ("Beschwerde", "Ich beschwere mich über die Bearbeitung meines Tickets: niemand hat geantwortet."),  # a complaint, German
        ("Formal complaint", "I wish to complain about how my support ticket was handled by your agent."),  # English
        ("Mise en demeure", "Au nom de mon client, nous vous mettons en demeure de cesser ce traitement."),  # a lawyer, French
    ],
)
def test_a_complaint_or_notice_is_forwarded_to_the_controller_at_once_and_opens_no_request(session: Session, subject: str, body: str) -> None:
    from app.dsr.communication import KIND

    acme(session)
    outcome = ingest(session, _privacy_mail("Ann <ann@acme.example>", subject, body, "c1@x"))
    assert outcome.claim is not None and outcome.claim.code == "communication"
    assert len(mail_requests(session)) == 0 and acks(session) == 0
    [forward] = session.scalars(select(OutboxEmail).where(OutboxEmail.kind == KIND))
    assert forward.to_addr == "dpo@acme.example" and forward.related_id == outcome.ticket_id and forward.state == "queued"
    assert forward.body_text is not None and body in forward.body_text
    note = session.scalars(select(Message).where(Message.ticket_id == outcome.ticket_id, Message.direction == "note")).one()
    assert note.notes is not None and note.notes[0]["outbox_ids"] == [forward.id]


def test_the_desk_never_answers_the_sender_of_a_communication_but_may_write_to_the_controller(session: Session) -> None:
    from app.dsr.communication import CommunicationNotAnswered
    from app.mail.outbox import enqueue_email

    acme(session)
    outcome = ingest(session, _privacy_mail("ann@acme.example", "Complaint", "Formal complaint about my ticket.", "c2@x"))
    with pytest.raises(CommunicationNotAnswered), session.begin_nested():
        enqueue_email(
            session,
            to="ann@acme.example",
            subject="Re",
            body_text="Sorry!",
            kind="reply",
            related_type="ticket",
            related_id=outcome.ticket_id,
            by=TEST_PRINCIPAL,
            now=NOW,
        )
    row = enqueue_email(
        session,
        to="dpo@acme.example",
        subject="Re",
        body_text="See below",
        kind="reply",
        related_type="ticket",
        related_id=outcome.ticket_id,
        by=TEST_PRINCIPAL,
        now=NOW,
    )
    assert row.state == "queued"


def test_an_authoritys_letter_without_a_known_controller_stays_in_triage_with_a_note(session: Session) -> None:
    acme(session)
    outcome = ingest(session, _privacy_mail("office@authority.example", "Your processing", "The supervisory authority asks for your statement.", "c3@x"))
    assert outcome.claim is not None and outcome.claim.code == "communication"
    assert count(session, OutboxEmail) == 0 and len(mail_requests(session)) == 0
    note = session.scalars(select(Message).where(Message.ticket_id == outcome.ticket_id, Message.direction == "note")).one()
    assert note.body_text is not None and "route the ticket" in note.body_text


def test_a_request_that_also_complains_is_a_request(session: Session) -> None:
    acme(session)
    ingest(session, _privacy_mail("ann@acme.example", "Complaint", "I wish to complain, and please delete my personal data now.", "c4@x"))
    assert len(mail_requests(session)) == 1


def test_a_bounced_communication_forward_is_marked_on_its_row_and_escalated_at_once(session: Session) -> None:
    from app.dsr.communication import KIND
    from tests.factories import make_user

    # Given a privacy officer and a complaint forwarded to Acme's DSR contact (Pexgle §11.2: immediately)
    officer = make_user(session, "privacy_officer")
    acme(session)
    outcome = ingest(session, _privacy_mail("ann@acme.example", "Complaint", "Formal complaint about my ticket.", "c5@x"))
    forward = session.scalars(select(OutboxEmail).where(OutboxEmail.kind == KIND)).one()
    # When the controller's mail server returns it
    ingest(session, _dsn(f"Message-ID: {forward.message_id}\r\n", kind="text/rfc822-headers"), minutes=30)
    # Then the row is bounced, the officers are emailed at once, and the ticket says so (issue 11 item 4: any notice kind)
    assert forward.state == "bounced" and forward.bounce_status == "5.1.1"
    alerts = list(session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "dsr_escalation")))
    assert [(a.to_addr, a.related_type, a.related_id) for a in alerts] == [(officer.email, "ticket", outcome.ticket_id)]
    notes = [m for m in session.scalars(select(Message).where(Message.ticket_id == outcome.ticket_id, Message.direction == "note"))]
    assert any(n.notes and n.notes[0].get("code") == "communication_undelivered" for n in notes)


def test_a_bounced_forward_shows_on_the_request_and_in_the_banner_at_once(session: Session, client, auth) -> None:  # type: ignore[no-untyped-def]
    from app.dsr import forward as dsr_forward
    from app.dsr.settings import DsrSettings

    # Given a request forwarded to Acme hours before its deadline is near, and the forward bounced
    request_with_ack(session)
    dsr = mail_requests(session)[0]
    dsr_forward.forward(session, dsr.id, settings=DsrSettings("privacy@desk.example", "desk.example"), by=TEST_PRINCIPAL, now=NOW)
    sent = session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "dsr_forward")).one()
    ingest(session, _dsn(f"Message-ID: {sent.message_id}\r\n", status="5.2.1", kind="text/rfc822-headers"), minutes=20)
    # When a privacy officer opens the request
    auth.login("privacy_officer")
    page = client.get(f"/dsr/{dsr.id}").get_data(as_text=True)
    # Then the forward's row says it bounced, with the status, and the banner counts the request
    assert "bounced: returned by the recipient" in page and "5.2.1" in page
    assert "dsr-banner" in client.get("/tickets/").get_data(as_text=True)


# ---- a different message under the Message-ID of mail the desk wrote (issue 11 item 2) --------------------------
# Found trying the faster ingest (a pre-existing rule): the desk stores its own mail on the ticket (the forward to the
# controller as a note, a staff reply) with its Message-ID but no raw bytes, and a message arriving under that id
# was taken for the same bytes again: "duplicate", exit 0, its content kept nowhere.


def _reusing(message_id: str, *, body: str) -> bytes:
    return (
        f"From: Mallory Other <mallory@elsewhere.example>\r\nTo: privacy@desk.example\r\nSubject: Something else entirely\r\n"
        f"Message-ID: <{message_id}>\r\nDate: Mon, 30 Nov 2026 10:30:00 +0000\r\n\r\n{body}\r\n"
    ).encode()


def test_another_message_under_the_id_of_the_desks_forward_is_stored_on_its_ticket_and_noted(session: Session) -> None:
    from app.dsr import forward as dsr_forward
    from app.dsr.settings import DsrSettings

    # Given a request forwarded to Acme (the forward's note on the request's ticket carries the forward's Message-ID)
    request_with_ack(session)
    dsr = mail_requests(session)[0]
    dsr_forward.forward(session, dsr.id, settings=DsrSettings("privacy@desk.example", "desk.example"), by=TEST_PRINCIPAL, now=NOW)
    sent = session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "dsr_forward")).one()
    messages = count(session, Message)
    # When a different message arrives under that Message-ID
    raw = _reusing(sent.message_id.strip("<>"), body="Shipment 7781 arrived damaged.")
    outcome = ingest(session, raw, minutes=30)
    # Then it is stored, noted as a reused id, on a ticket of its own (Mallory is nobody on the request's ticket); the same bytes again are a no-op
    assert outcome.status == "stored" and outcome.new_ticket and outcome.ticket_id != dsr.ticket_id
    message = session.get(Message, outcome.message_pk)
    assert message is not None and "Shipment 7781" in (message.body_text or "")
    assert any(n.get("code") == "reused_message_id" for n in message.notes or [])
    assert ingest(session, raw, minutes=31).status == "duplicate" and count(session, Message) == messages + 1


@pytest.mark.parametrize("direction", ["outbound", "note"])
def test_another_message_under_the_id_of_a_staff_reply_or_note_is_stored_and_noted(session: Session, direction: str) -> None:
    from app.tickets import service as tickets

    ticket = tickets.create_ticket(session, controller_id=None, requester_name="R", requester_email="r@example.org", subject="S", by=TEST_PRINCIPAL, now=NOW)
    desk_msg = tickets.MessageInput(direction=direction, body_text="Hello from the desk", message_id="reply-7@desk.example")
    tickets.add_message(session, ticket, desk_msg, by=TEST_PRINCIPAL, now=NOW)
    outcome = ingest(session, _reusing("reply-7@desk.example", body="An unrelated complaint."), minutes=30)
    # Stored and noted (never dropped as the desk's own mail again), on a thread of its own: its sender is not on the ticket
    assert outcome.status == "stored" and outcome.new_ticket and outcome.ticket_id != ticket.id
    message = session.get(Message, outcome.message_pk)
    assert message is not None and any(n.get("code") == "reused_message_id" for n in message.notes or [])
    # The ticket's requester reusing the id (a broken mail client) is kept on the ticket
    mine = _reusing("reply-7@desk.example", body="Me again.").replace(b"Mallory Other <mallory@elsewhere.example>", b"R <r@example.org>")
    assert (ingest(session, mine, minutes=31).ticket_id, ingest(session, mine, minutes=32).status) == (ticket.id, "duplicate")


def test_a_message_under_the_id_of_an_inbound_message_kept_without_its_digest_is_taken_as_the_same(session: Session) -> None:
    # Nothing to compare it with (an inbound message stored without its raw original): a redelivery, as before.
    from app.tickets import service as tickets

    ticket = tickets.create_ticket(session, controller_id=None, requester_name="R", requester_email="r@example.org", subject="S", by=TEST_PRINCIPAL, now=NOW)
    tickets.add_message(session, ticket, tickets.MessageInput(direction="inbound", body_text="Hi", message_id="old-1@mail.example"), by=TEST_PRINCIPAL, now=NOW)
    outcome = ingest(session, _reusing("old-1@mail.example", body="Hi"), minutes=30)
    assert (outcome.status, outcome.ticket_id) == ("duplicate", ticket.id)
