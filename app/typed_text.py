"""Text a person typed into a form, checked before it is stored: every bad input gets a clear error, nothing is changed.

Refused: a control character (Unicode category Cc: NUL, escape, bell...) other than the line breaks a textarea
sends (CR, LF) and tab; and text with nothing visible in it (only spaces and format characters such as zero-width
spaces and direction marks, Unicode Cf: no letter, digit, punctuation or symbol). Such text reads as empty, or
reaches a screen, a log or an email as something else than what the person saw.
"""

from __future__ import annotations

import unicodedata

# What a person types besides visible characters and spaces: the line breaks of a textarea (CR LF) and tabs.
TYPED_CONTROLS = "\r\n\t"
# The first letter of the Unicode categories that show something: letters, numbers, punctuation, symbols.
VISIBLE = "LNPS"


def problem(text: str) -> str | None:
    """Why `text` is not typed text, as a phrase that follows "the text" ("has nothing visible in it"), or None."""
    categories = [unicodedata.category(ch) for ch in text]
    if any(cat == "Cc" and ch not in TYPED_CONTROLS for ch, cat in zip(text, categories, strict=True)):
        return "contains control characters (such as NUL or escape), which typed text cannot hold"
    if not any(cat[0] in VISIBLE for cat in categories):
        return "has nothing visible in it"
    return None
