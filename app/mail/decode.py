"""Bytes and header values of inbound mail -> valid text (pure), the way browsers and mature mail clients do it.

- A charset label is resolved by the WHATWG Encoding Standard's label table
  (`webencodings`): labels that lie in practice decode as what senders meant
  (`gb2312` -> GBK, read by the gb18030 decoder as the standard says;
  `iso-8859-1` and `us-ascii` -> windows-1252; `ks_c_5601-1987` -> CP949).
- A label the table does not know, or maps to its "replacement" encoding (ISO-2022-KR, HZ: refused by
  browsers to stop script injection, still sent by mail clients), is decoded with Python's codec of that
  name when it is a character encoding (UTF-7, DOS code pages, ...): the message's text, never one U+FFFD.
- An unlabelled (or unknown-labelled) body that is not UTF-8 is guessed by `chardetng` (Firefox's
  detector, the one browsers use for unlabelled pages); when that finds nothing, windows-1252.
- ISO-2022-JP is read through windows-31j (Shift_JIS) as the standard's index does, so the NEC and IBM
  extensions Japanese mail clients write (①, ㈱, 髙) are characters, not replacement marks.
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

import chardetng_py
import webencodings

# The WHATWG standard reads GBK with the gb18030 decoder (Encoding Standard §11.1.1); Python's gbk codec cannot
# decode the characters only GB18030 has, so the standard's decoder is used for that one encoding.
_DECODER_OF = {"gbk": "gb18030"}
# Labels the standard maps to its "replacement" encoding (a browser shows one U+FFFD): mail's own decoders for them.
_REPLACED = {"iso-2022-kr": "iso2022_kr", "csiso2022kr": "iso2022_kr", "hz-gb-2312": "hz"}
# Python codecs that are not a message's character encoding (or that would decode markup as escapes).
_NOT_CHARSETS = frozenset({"idna", "punycode", "undefined", "unicode-escape", "raw-unicode-escape", "charmap"})
_SURROGATES = re.compile(r"[\ud800-\udfff]")
_META = re.compile(rb"""<meta[^>]{0,300}?charset\s*=\s*["']?\s*([A-Za-z0-9_:.+-]{1,40})""", re.IGNORECASE)
_JIS_ESCAPE = re.compile(rb"\x1b(\$[@B]|\([BJI])")
GUESS_MIN_BYTES = 2
GUESS_MAX_BYTES = 65536


def codec_for(label: str | None) -> str | None:
    """The Python codec for a charset label under the WHATWG label table (else Python's own charset of that name), or None."""
    if not label:
        return None
    name = label.strip().strip("\"'").strip().lower()
    encoding = webencodings.lookup(name)
    if encoding is not None and encoding.name != "replacement":
        return _DECODER_OF.get(encoding.name, encoding.codec_info.name)
    if name in _REPLACED:
        return _REPLACED[name]
    if not name or len(name) > 40:
        return None
    try:
        info = codecs.lookup(name)
    except LookupError:
        return None
    # Only character encodings: never a bytes-to-bytes transform (base64, zlib) or an escape decoder.
    if encoding is not None or not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return None  # the standard's replacement encoding without a decoder here; or not a character encoding at all
    return info.name


def _bom(raw: bytes) -> str | None:
    if raw.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if raw.startswith(codecs.BOM_UTF16_LE):
        return "utf-16"
    if raw.startswith(codecs.BOM_UTF16_BE):
        return "utf-16"
    return None


def guess_codec(raw: bytes) -> str:
    """The codec of unlabelled bytes: UTF-8 when they are valid UTF-8 (and not ISO-2022-JP), else chardetng's guess, else windows-1252."""
    try:
        raw.decode("utf-8")
        if b"\x1b" not in raw or not _JIS_ESCAPE.search(raw):
            return "utf-8"
        return "iso2022_jp"  # 7-bit Japanese mail sent without a label (its escape sequences say what it is)
    except UnicodeDecodeError:
        pass
    if len(raw) < GUESS_MIN_BYTES:
        return "cp1252"
    detector = chardetng_py.EncodingDetector()
    detector.feed(raw[:GUESS_MAX_BYTES], last=len(raw) <= GUESS_MAX_BYTES)
    return codec_for(detector.guess(tld=None, allow_utf8=False)) or "cp1252"


def html_meta_charset(raw: bytes) -> str | None:
    """The charset an HTML document declares in a `<meta>` in its first 1,024 bytes (the WHATWG prescan), or None."""
    found = _META.search(raw[:1024])
    return found.group(1).decode("ascii") if found is not None else None


def _iso2022jp(raw: bytes) -> str:
    """ISO-2022-JP read through windows-31j: each JIS X 0208 pair as its Shift_JIS pair, so NEC/IBM extensions decode too."""
    out: list[str] = []
    mode = b"(B"
    for n, chunk in enumerate(_JIS_ESCAPE.split(raw)):
        if n % 2 == 1:
            mode = chunk
            continue
        if mode in (b"$@", b"$B"):
            sjis = bytearray()
            for i in range(0, len(chunk) - 1, 2):
                j1, j2 = chunk[i], chunk[i + 1]
                if not (0x21 <= j1 <= 0x7E and 0x21 <= j2 <= 0x7E):
                    sjis += b"??"
                    continue
                s1 = ((j1 + 1) >> 1) + (0x70 if j1 <= 0x5E else 0xB0)
                s2 = j2 + (0x1F if j1 % 2 else 0x7E)
                sjis += bytes((s1, s2 + 1 if j1 % 2 and s2 >= 0x7F else s2))
            out.append(sjis.decode("cp932", errors="replace") + ("\ufffd" if len(chunk) % 2 else ""))
        elif mode == b"(I":
            out.append(bytes(b + 0x80 if 0x21 <= b <= 0x5F else b for b in chunk).decode("cp932", errors="replace"))
        else:
            out.append(chunk.decode("cp1252", errors="replace"))
    return "".join(out)


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
        text = _iso2022jp(raw) if codec == "iso2022_jp" else raw.decode(codec, errors="replace")
    except LookupError:  # a codec name the detector knows and this Python does not
        text, note = raw.decode("cp1252", errors="replace"), "charset_unknown"
    return text.replace("\x00", ""), note


def header_codec(values: list[str]) -> str | None:
    """The one codec for the raw 8-bit bytes in a message's header values (surrogate escapes), guessed from all of them
    together (a name alone is too short to guess); None when no value has such bytes or they are all UTF-8."""
    raw = [v.encode("utf-8", errors="surrogateescape") for v in values if _SURROGATES.search(v)]
    legacy = []
    for value in raw:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            legacy.append(value)
    return guess_codec(b"\n".join(legacy)) if legacy else None


def unescape_header(value: str, codec: str | None = None) -> tuple[str, bool]:
    """A header value from the standard library with raw 8-bit bytes (surrogate escapes) decoded; True when any were.

    RFC 6532 headers are UTF-8; a legacy client's raw bytes are decoded as `codec` (the message's
    `header_codec`) or guessed like an unlabelled body. A 7-bit ISO-2022-JP value sent without
    RFC 2047 words (older Japanese clients) is decoded too.
    """
    if not _SURROGATES.search(value):
        if "\x1b" in value and value.isascii() and _JIS_ESCAPE.search(value.encode("ascii")):
            return _iso2022jp(value.encode("ascii")), True
        return value, False
    try:
        raw = value.encode("utf-8", errors="surrogateescape")
    except UnicodeEncodeError:  # a surrogate that is not an escaped byte: replace it
        return _SURROGATES.sub("\ufffd", value), True
    try:
        return raw.decode("utf-8"), True
    except UnicodeDecodeError:
        pass
    text, _ = decode_bytes(raw, codec)
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
