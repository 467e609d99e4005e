"""The communication reader against a tester's 89 texts: complaints about the processing, authorities' letters and
lawyers' notices are communications (Pexgle §11.2); complaints about products and service are not."""

from __future__ import annotations

import pytest

from app.dsr.communication import communication_kind
from tests.mail.communication_corpus import K2, K

TEXTS = K + K2


@pytest.mark.parametrize(("language", "kind", "text"), TEXTS, ids=[f"{n}-{t[0]}" for n, t in enumerate(TEXTS)])
def test_each_text_is_read_as_expected(language: str, kind: str | None, text: str) -> None:
    assert communication_kind(text) == kind, text
