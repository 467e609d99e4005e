"""Parsing real client formats and hostile mail into what the desk stores (no database)."""

from __future__ import annotations

import pytest

from app.mail.parse import MalformedMessage, parse_mail
from app.tickets.html import sanitise_html
from tests.mail.conftest import corpus

LIMIT = 25 * 1024 * 1024

# The new text a person typed, per real client format (quoted history and signature removed).
REPLIES = {
    "reply_gmail_en.eml": "Thanks, that works now. I can log in again.\n\nJane",
    "reply_outlook_en.eml": "Yes, please delete the account and confirm when it is done.",
    "reply_apple_en.eml": "Sure, my customer number is on the form I sent last week.",
    "reply_thunderbird_en.eml": "The new address is 12 Harbour Road, Leith. Please update it.",
    "reply_gmail_de.eml": "Vielen Dank, die Unterlagen sind angekommen.",
    "reply_outlook_de.eml": "Bitte löschen Sie alle meine Daten.",
    "reply_apple_de.eml": "Ja, bitte keine Werbung mehr per Post und E-Mail.",
    "reply_thunderbird_de.eml": "Mein Nachname ist Weber, nicht Webber. Bitte korrigieren.",
    "reply_gmail_fr.eml": "Merci, le fichier CSV me convient parfaitement.",
}


@pytest.mark.parametrize("name", sorted(REPLIES))
def test_reply_text_is_separated_from_quoted_history(name: str) -> None:
    mail = parse_mail(corpus(name), attachment_max_bytes=LIMIT)
    assert mail.reply_text == REPLIES[name]
    # The full body is still there (quoted history included) for the record.
    assert len(mail.body_text) > len(mail.reply_text)
    assert not mail.is_auto_reply


def test_encoded_sender_names_are_decoded() -> None:
    mail = parse_mail(corpus("reply_gmail_de.eml"), attachment_max_bytes=LIMIT)
    assert (mail.from_name, mail.from_email) == ("Jürgen Müller", "juergen.mueller@gmail.example")
    assert mail.in_reply_to == ["desk-out-5@desk.example"]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("auto_vacation_auto_submitted.eml", "auto:auto_submitted"),
        ("auto_precedence_bulk.eml", "auto:precedence"),
        ("auto_x_autoreply.eml", "auto:x_autoreply"),
        ("auto_outlook_oof_de.eml", "auto:outlook_oof"),
    ],
)
def test_auto_replies_are_recognised(name: str, reason: str) -> None:
    mail = parse_mail(corpus(name), attachment_max_bytes=LIMIT)
    assert mail.is_auto_reply and reason in mail.flags


def test_wrong_charset_falls_back_and_notes_it() -> None:
    mail = parse_mail(corpus("hostile_wrong_charset.eml"), attachment_max_bytes=LIMIT)
    assert "Auskunft über meine Daten gemäß" in mail.body_text
    assert {"code": "charset_fallback", "declared": "x-made-up-charset"} in mail.notes


def test_undeclared_8bit_junk_is_decoded_without_error() -> None:
    mail = parse_mail(corpus("hostile_8bit_no_charset.eml"), attachment_max_bytes=LIMIT)
    assert "Ana Gómez (España)" in mail.body_text
    assert {"code": "charset_fallback", "declared": "none"} in mail.notes


def test_malformed_headers_are_read_leniently_and_noted() -> None:
    mail = parse_mail(corpus("hostile_malformed_headers.eml"), attachment_max_bytes=LIMIT)
    assert mail.from_email == "broken.sender@example.org"
    assert mail.message_id == "malformed-headers-1@example.org"
    assert any(n["code"] == "header_defects" for n in mail.notes)
    # The lines after the broken header are kept as text, not lost.
    assert "This line has no colon" in mail.body_text


@pytest.mark.parametrize(("name", "reason"), [("hostile_no_headers.eml", "malformed"), ("hostile_no_sender.eml", "no_sender")])
def test_unusable_messages_raise_with_a_reason(name: str, reason: str) -> None:
    with pytest.raises(MalformedMessage) as caught:
        parse_mail(corpus(name), attachment_max_bytes=LIMIT)
    assert caught.value.reason == reason


def test_empty_input_is_malformed() -> None:
    with pytest.raises(MalformedMessage) as caught:
        parse_mail(b"  \r\n", attachment_max_bytes=LIMIT)
    assert caught.value.reason == "empty"


def test_nested_multiparts_yield_body_html_and_every_file() -> None:
    mail = parse_mail(corpus("hostile_nested_multipart.eml"), attachment_max_bytes=LIMIT)
    assert mail.body_text.startswith("Please see my complaint")
    assert mail.body_html is not None and "cid:shot1" in mail.body_html
    kinds = sorted(a.content_type for a in mail.attachments)
    assert kinds == ["application/pdf", "image/png", "message/rfc822"]
    forwarded = next(a for a in mail.attachments if a.content_type == "message/rfc822")
    assert b"Your order has shipped." in forwarded.content


def test_deep_nesting_is_cut_with_a_note() -> None:
    inner = "Content-Type: text/plain\n\ndeep text\n"
    for depth in range(40):
        inner = f'Content-Type: multipart/mixed; boundary="b{depth}"\n\n--b{depth}\n{inner}--b{depth}--\n'
    raw = f"From: a@example.org\nSubject: deep\nMessage-ID: <deep@example.org>\nMIME-Version: 1.0\n{inner}".encode()
    mail = parse_mail(raw, attachment_max_bytes=LIMIT)
    assert any(n["code"] == "parts_dropped" for n in mail.notes)


def test_zip_bomb_is_a_plain_attachment_never_unpacked() -> None:
    mail = parse_mail(corpus("hostile_zip_bomb.eml"), attachment_max_bytes=LIMIT)
    [archive] = mail.attachments
    assert archive.content_type == "application/zip" and archive.filename == "documents.zip"
    assert len(archive.content) < 10_000  # the compressed bytes only: 400 MB once unpacked


def test_attachment_over_the_limit_is_dropped_with_a_note() -> None:
    mail = parse_mail(corpus("hostile_zip_bomb.eml"), attachment_max_bytes=1000)
    assert mail.attachments == []
    assert any(n["code"] == "attachment_dropped" and n["reason"] == "over_limit" for n in mail.notes)
    assert mail.body_text.startswith("See the attached archive.")


def test_html_with_scripts_is_kept_and_sanitised_for_display() -> None:
    mail = parse_mail(corpus("hostile_html_scripts.eml"), attachment_max_bytes=LIMIT)
    assert mail.body_html is not None and "<script>" in mail.body_html  # stored as received (evidence)
    shown = sanitise_html(mail.body_html)
    for bad in ("<script", "onload", "tracker.example", "javascript:", "<iframe", "<form", "<style"):
        assert bad not in shown
    assert "<b>unsubscribe</b>" in shown
    assert "I want to unsubscribe." in mail.body_text  # text derived from the HTML for the reply view


def test_forged_from_with_a_different_return_path_is_flagged() -> None:
    mail = parse_mail(corpus("hostile_forged_from.eml"), attachment_max_bytes=LIMIT)
    assert "return_path_mismatch" in mail.flags and "dmarc_fail" in mail.flags


def test_missing_message_id_gets_a_stable_content_id() -> None:
    raw = b"From: a@example.org\nSubject: x\n\nbody\n"
    first = parse_mail(raw, attachment_max_bytes=LIMIT)
    assert not first.has_message_id
    assert first.message_id == parse_mail(raw, attachment_max_bytes=LIMIT).message_id


@pytest.mark.parametrize(
    "disposition",
    [
        'attachment; filename="=?UTF-8?B?R3LDvMOfZSDDnGJlcnNpY2h0LnBkZg==?="',  # RFC 2047 in a parameter (Outlook, Gmail)
        "attachment; filename*=UTF-8''Gr%C3%BC%C3%9Fe%20%C3%9Cbersicht.pdf",  # RFC 2231
        'attachment; filename="Grüße Übersicht.pdf"',  # raw UTF-8 (RFC 6532)
    ],
)
def test_a_non_ascii_file_name_is_decoded_however_it_is_written(disposition: str) -> None:
    raw = (
        "From: a@example.org\r\nTo: privacy@desk.localhost\r\nSubject: s\r\nMessage-ID: <f@example.org>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n'
        f"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: {disposition}\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n--b--\r\n"
    ).encode()
    [part] = parse_mail(raw, attachment_max_bytes=1_000_000).attachments
    assert (part.filename, part.content_type, part.content) == ("Grüße Übersicht.pdf", "application/pdf", b"%PDF")
