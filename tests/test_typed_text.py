"""What the desk refuses of text a person typed (app.typed_text): control characters, and text with nothing visible."""

from __future__ import annotations

import pytest

from app.typed_text import problem


@pytest.mark.parametrize(
    "text",
    [
        "Phoned the DPO.",
        "Line one\r\nLine two\n\tindented",  # a textarea's CR LF, a tab
        "Zoë Ærø, Łukasz, Ελένη, Ольга",
        "مرحبا \u200fשלום",  # right-to-left text with a mark beside visible letters
        "你好，世界",
        "✔ 👍",  # symbols and emoji
        "42",
        "…",
        "\u00a0ok\u3000",  # no-break and ideographic spaces around a word
    ],
)
def test_typed_text_is_taken(text: str) -> None:
    assert problem(text) is None


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("a\x00b", "control characters"),
        ("\x1b[31mred", "control characters"),
        ("ding\x07", "control characters"),
        ("del\x7f", "control characters"),
        ("next\x85line", "control characters"),  # a C1 control (NEL)
        ("form\x0cfeed", "control characters"),
        ("\u200b\u200b", "nothing visible"),  # zero-width spaces
        ("\u202e", "nothing visible"),  # a right-to-left override alone
        ("\ufeff\u2060\u200d", "nothing visible"),  # BOM, word joiner, zero-width joiner
        ("\u0301\u0308", "nothing visible"),  # combining marks with nothing to sit on
        ("   \u00a0\u3000", "nothing visible"),
        ("", "nothing visible"),
    ],
)
def test_control_characters_and_invisible_text_are_refused_with_a_reason(text: str, said: str) -> None:
    found = problem(text)
    assert found is not None and said in found
