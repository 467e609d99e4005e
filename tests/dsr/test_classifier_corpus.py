"""The request classifier against a tester's 171 texts in 21 languages: every request recognised with its types,
every ordinary support message left a ticket (in single-address mode that decides whether a request opens)."""

from __future__ import annotations

import pytest

from app.dsr.classifier import classify
from tests.dsr.classifier_corpus import C as TEXTS


@pytest.mark.parametrize(("language", "is_request", "types", "text"), TEXTS, ids=[f"{n}-{t[0]}" for n, t in enumerate(TEXTS)])
def test_each_text_is_read_as_the_tester_expected(language: str, is_request: bool, types: set[str] | None, text: str) -> None:
    hint = classify(text)
    assert hint.looks_like_dsr is is_request, (hint, text)
    if is_request and types:
        assert set(types) <= set(hint.types), (hint, text)
