"""The identifier index's text scan: the shortcuts taken for speed (issue 11 item 7) find what the full scan finds."""

from __future__ import annotations

import random
from collections.abc import Iterator

import phonenumbers
import pytest
from phonenumbers import PhoneMetadata
from phonenumbers.phonenumberutil import COUNTRY_CODES_FOR_NON_GEO_REGIONS, SUPPORTED_REGIONS

from app.tickets import identifiers
from app.tickets.identifiers import MIN_PHONE_DIGITS, PHONE_REGIONS, identifiers_of, phones_in


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


def test_a_text_with_fewer_digits_than_any_number_is_not_handed_to_the_phone_matcher(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the matcher was asked about a text without digits")

    monkeypatch.setattr(identifiers, "_Matcher", refuse)
    assert list(phones_in("Please delete my account, Jane Roe. Call me: plus four nine.")) == []
    assert list(phones_in("Order 12, item 3.")) == []  # three digits: no valid number anywhere (MIN_PHONE_DIGITS)
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


def _shortest(metadata: PhoneMetadata | None) -> int:
    lengths = [n for n in (metadata.general_desc.possible_length if metadata and metadata.general_desc else ()) if n > 0]
    return min(lengths) if lengths else 1  # no bound known: any length


def test_min_phone_digits_is_no_more_than_the_metadata_allows() -> None:
    # A valid number's digits: its national significant number in one of PHONE_REGIONS, or country code and number anywhere
    national = min(_shortest(PhoneMetadata.metadata_for_region(r)) for r in PHONE_REGIONS)
    international = [len(str(m.country_code)) + _shortest(m) for r in SUPPORTED_REGIONS if (m := PhoneMetadata.metadata_for_region(r))]
    international += [len(str(cc)) + _shortest(PhoneMetadata.metadata_for_nongeo_region(cc)) for cc in COUNTRY_CODES_FOR_NON_GEO_REGIONS]
    assert MIN_PHONE_DIGITS <= min(national, *international)


def _plain(text: str) -> list[tuple[str, str]]:
    # What phones_in found before its shortcuts: phonenumbers' own matcher on the whole text, region by region.
    found, seen = [], set()
    for region in PHONE_REGIONS:
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
            if (match.start, match.end) not in seen:
                seen.add((match.start, match.end))
                found.append((match.raw_string, phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)))
    return found


TEXTS = [
    "call +49 30 901820 please",
    "On Mon, Nov 16, 2026 at 10:02 AM Support <support@desk.example> wrote:",
    "Sent: Monday, November 16, 2026 10:02 AM; customer BR-1001, order 4004",
    "Tel. 030 901820, mobil 0170 1234567 oder +43 1 234 5678, Fax (0)30/901821",
    "+44 20 7946 0958 ext. 123, 020 7946 0959 x45, 01 23 45 67 89, 06 12 34 56 78",
    "+31 20 123 4567 / 020-1234567, +41 44 668 18 00, 044 668 18 00, 0800 123 456",
    "Kurzwahl 110, 112, 1234, 12345, 89 12, +49 1234, +290 22 123, +683 4002, 00 49 30 901820",
    "Ruf an: \uff0b\uff14\uff19 \uff13\uff10 \uff19\uff10\uff11\uff18\uff12\uff10 oder \u0660\u0663\u0660 \u0669\u0660\u0661\u0668\u0662\u0660",
    "IBAN DE89 3704 0044 0532 0130 00, 12/11/2026, 10:02:33, 1x2x3x4x5, 49x30x901820",
    "abc8005001234 and 8005001234def and (030) 901820 and [030] 901820 and 030 901820-12",
]


@pytest.mark.parametrize("text", TEXTS)
def test_the_shortcuts_find_what_the_plain_matcher_finds(text: str) -> None:
    assert list(phones_in(text)) == _plain(text)


def test_the_shortcuts_find_what_the_plain_matcher_finds_in_random_texts() -> None:
    # Digits, phone punctuation, letters and words in random runs: numbers, near-numbers, dates and noise
    rng = random.Random(11)
    pieces = [*"0123456789", *"0123456789", " ", " ", "-", "/", ".", "(", ")", "+", "x", "ext ", "a", "Tel ", ", ", "\n", "\uff13", "00", "+49 ", "0"]
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 40))) for _ in range(1000)]
    assert sum(1 for t in texts if _plain(t)) > 50  # the texts hold numbers, not only noise
    for text in texts:
        assert list(phones_in(text)) == _plain(text), text
