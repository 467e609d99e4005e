"""Bytes and header values of inbound mail -> valid text (pure), the way browsers and mature mail clients do it.

- A charset label is resolved by the WHATWG Encoding Standard's label table
  (`webencodings`): labels that lie in practice decode as what senders meant
  (`gb2312` -> GBK, read by the gb18030 decoder as the standard says;
  `iso-8859-1` and `us-ascii` -> windows-1252; `ks_c_5601-1987` -> CP949).
- An unlabelled (or unknown-labelled) body that is not UTF-8 is guessed by
  `charset-normalizer`; when that finds nothing, windows-1252.
- Raw 8-bit header bytes (RFC 6532 UTF-8, or a legacy charset sent raw) arrive
  from the standard library as surrogate escapes: they are turned back into
  bytes and decoded the same way, so no lone surrogate ever reaches storage
  (it would fail at encryption time and bounce the mail).
- `format=flowed` (RFC 3676) bodies are unwrapped, with and without DelSp=yes.

Every function returns valid text (str that encodes as UTF-8) and never raises
on what a message contains; undecodable bytes become U+FFFD.
"""

from __future__ import annotations

import codecs
import re
from email.header import decode_header, make_header

import charset_normalizer
import webencodings

# The WHATWG standard reads GBK with the gb18030 decoder (Encoding Standard §11.1.1); Python's gbk codec cannot
# decode the characters only GB18030 has, so the standard's decoder is used for that one encoding.
_DECODER_OF = {"gbk": "gb18030"}
_SURROGATES = re.compile(r"[\ud800-\udfff]")
GUESS_MIN_BYTES = 8
_SINGLE_BYTE = ("cp1252", "cp1250", "cp1251", "koi8_r", "cp1253", "cp1254", "cp1255", "cp1256", "cp1257", "iso8859_2")
_MULTIBYTE = frozenset(
    {
        "cp932",
        "shift_jis",
        "shift_jis_2004",
        "shift_jisx0213",
        "euc_jp",
        "iso2022_jp",
        "gb18030",
        "gb2312",
        "gbk",
        "big5",
        "big5hkscs",
        "cp949",
        "euc_kr",
        "cp950",
    }
)


def codec_for(label: str | None) -> str | None:
    """The Python codec for a charset label under the WHATWG label table, or None for an unknown label."""
    if not label:
        return None
    encoding = webencodings.lookup(label.strip().strip("\"'"))
    if encoding is None:
        return None
    return _DECODER_OF.get(encoding.name, encoding.codec_info.name)


def _bom(raw: bytes) -> str | None:
    if raw.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if raw.startswith(codecs.BOM_UTF16_LE):
        return "utf-16"
    if raw.startswith(codecs.BOM_UTF16_BE):
        return "utf-16"
    return None


def guess_codec(raw: bytes) -> str:
    """The codec of unlabelled bytes: UTF-8 when they are valid UTF-8, else charset-normalizer's best guess, else windows-1252."""
    try:
        raw.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    if len(raw) >= GUESS_MIN_BYTES:
        sample = raw[:65536]
        best = charset_normalizer.from_bytes(sample).best()
        if best is not None and best.encoding and best.coherence > 0:
            return str(best.encoding)
        # No language recognised: on short texts the library readily takes Cyrillic for Shift_JIS. A single-byte
        # page in which it does recognise a language wins; else a multi-byte encoding that reads cleanly.
        single = charset_normalizer.from_bytes(sample, cp_isolation=list(_SINGLE_BYTE)).best()
        if single is not None and single.encoding and single.coherence > 0:
            return str(single.encoding)
        # A few accented letters among junk are far more often windows-1252 than the page they happen to "fit".
        if best is not None and best.encoding in _MULTIBYTE and best.chaos < 0.1:
            return str(best.encoding)
    return "cp1252"


def decode_bytes(raw: bytes, label: str | None) -> tuple[str, str | None]:
    """Text of `raw` declared as `label`, and a note code when the label was missing or unusable (else None).

    A byte-order mark wins over the label (as in browsers); a known label is
    decoded with replacement (never raises); an unknown or missing label is guessed.
    """
    codec = _bom(raw) or codec_for(label)
    note = None
    if codec is None:
        codec = guess_codec(raw)
        note = "charset_unknown" if label else (None if codec == "utf-8" else "charset_guessed")
    try:
        text = raw.decode(codec, errors="replace")
    except LookupError:  # a codec name charset-normalizer knows and this Python does not
        text, note = raw.decode("cp1252", errors="replace"), "charset_unknown"
    return text.replace("\x00", ""), note


def unescape_header(value: str) -> tuple[str, bool]:
    """A header value from the standard library with raw 8-bit bytes (surrogate escapes) decoded; True when any were.

    RFC 6532 headers are UTF-8; a legacy client's raw bytes are guessed like an unlabelled body.
    """
    if not _SURROGATES.search(value):
        return value, False
    try:
        raw = value.encode("utf-8", errors="surrogateescape")
    except UnicodeEncodeError:  # a surrogate that is not an escaped byte: replace it
        return _SURROGATES.sub("\ufffd", value), True
    text, _ = decode_bytes(raw, None)
    return text, True


def decode_words(value: str) -> str:
    """RFC 2047 encoded words decoded with the WHATWG labels; a broken word is kept as written."""
    if "=?" not in value:
        return value
    try:
        chunks: list[tuple[bytes, str | None]] = []
        for chunk, charset in decode_header(value):
            data = chunk.encode("utf-8", errors="surrogateescape") if isinstance(chunk, str) else chunk
            text, _ = decode_bytes(data, charset) if charset else decode_bytes(data, "utf-8")
            # make_header puts the spaces back between encoded words and plain text (RFC 2047 §6.2).
            chunks.append((text.encode("utf-8"), "utf-8" if charset or not text.isascii() else "us-ascii"))
        return safe_text(str(make_header(chunks)))
    except Exception:  # noqa: BLE001 - a malformed encoded word: keep the raw text
        return value


def safe_text(value: str) -> str:
    """`value` with every lone surrogate replaced: always encodable as UTF-8."""
    return _SURROGATES.sub("\ufffd", value) if _SURROGATES.search(value) else value


def unflow(text: str, *, delsp: bool) -> str:
    """Unwrap a format=flowed body (RFC 3676 §4): a line ending in a space continues on the next line.

    With DelSp=yes that trailing space was added by the sender and is removed; quoted
    lines join only lines of the same quote depth; the signature separator "-- " is never joined.
    """
    out: list[str] = []
    current: str | None = None
    depth_of_current = 0
    for line in text.split("\n"):
        line = line.removesuffix("\r")
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        if content.startswith(" "):
            content = content[1:]  # space-stuffing (§4.4)
        if current is not None and depth != depth_of_current:
            out.append(">" * depth_of_current + (" " if depth_of_current else "") + current)
            current = None
        flowed = content.endswith(" ") and content != "-- "
        if flowed and delsp:
            content = content[:-1]
        current = content if current is None else current + content
        depth_of_current = depth
        if not flowed:
            out.append(">" * depth + (" " if depth else "") + current)
            current = None
    if current is not None:
        out.append(">" * depth_of_current + (" " if depth_of_current else "") + current)
    return "\n".join(out)
