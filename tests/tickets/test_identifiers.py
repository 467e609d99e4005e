"""The identifier index's text scan: the shortcuts taken for speed (issue 11 item 7) find what the full scan finds."""

from __future__ import annotations

from collections.abc import Iterator

import phonenumbers
import pytest

from app.tickets import identifiers
from app.tickets.identifiers import identifiers_of, phones_in


@pytest.mark.parametrize(
    "text",
    [
        "call +49 30 901820 please",
        "Ruf an: \uff0b\uff14\uff19 \uff13\uff10 \uff19\uff10\uff11\uff18\uff12\uff10",  # fullwidth digits and plus
        "\u0660\u0663\u0660 \u0669\u0660\u0661\u0668\u0662\u0660",  # Arabic-Indic digits, no country code (DE)
    ],
)
def test_numbers_written_in_any_scripts_digits_are_found(text: str) -> None:
    assert [e164 for _, e164 in phones_in(text)] == ["+4930901820"]


def test_a_text_without_a_digit_is_not_handed_to_the_phone_matcher(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the matcher was asked about a text without digits")

    monkeypatch.setattr(phonenumbers, "PhoneNumberMatcher", refuse)
    assert list(phones_in("Please delete my account, Jane Roe. Call me: plus four nine.")) == []
    assert list(phones_in("")) == [] and list(phones_in(None)) == []


def test_a_text_given_twice_is_read_once_and_finds_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    body = "Jane Roe, jane@example.org, +49 30 901820, DE89 3704 0044 0532 0130 00"
    once = identifiers_of([body], ["jane@example.org"], ["Jane Roe"])
    subject = identifiers_of(["Subject"], [], [])
    scanned: list[str | None] = []
    real = identifiers.phones_in

    def counted(text: str | None) -> Iterator[tuple[str, str]]:
        scanned.append(text)
        return real(text)

    monkeypatch.setattr(identifiers, "phones_in", counted)
    assert identifiers_of(["Subject", body, body], ["jane@example.org"], ["Jane Roe"]) == once | subject
    assert scanned == ["Subject", body]
    assert {kind for kind, _ in once} == {"email", "phone", "iban", "name"}
