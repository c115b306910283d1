"""Bytes and header values to text, for charsets as mail really uses them.

Declared charsets are often wrong or missing (8-bit text labelled us-ascii, GBK labelled gb2312,
UTF-8 labelled latin-1, no label at all), so every decode here is a strict try in a sensible
order, ending in a lossy one; nothing here raises.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import quopri
import re

from charset_normalizer import from_bytes

# Charset labels seen in the wild that Python does not know, or knows as a smaller set.
_ALIASES = {
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "windows-874": "cp874",
    "gb2312": "gb18030",  # GB18030 is a superset; mislabelled GBK mail decodes too
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "iso-8859-1": "cp1252",  # WHATWG: ISO-8859-1 labels mean windows-1252
    "latin1": "cp1252",
    "us-ascii": "ascii",
    "ansi_x3.4-1968": "ascii",
    "x-unknown": "",
    "unknown-8bit": "",
    "unknown": "",
    "x-user-defined": "",
    "default": "",
    "utf8": "utf-8",
    "x-mac-roman": "mac-roman",
    "macintosh": "mac-roman",
    "iso-2022-jp": "iso2022_jp_ext",
    "shift-jis": "cp932",
    "shift_jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "euc-kr": "cp949",
    "big5": "big5hkscs",  # HKSCS adds the characters Taiwanese and Hong Kong mail uses
}
# Labels whose mail is often written in a sibling charset (Shift_JIS sent as ISO-2022-JP).
_SIBLINGS = {"iso2022_jp_ext": ("cp932", "euc_jp"), "iso2022_jp": ("cp932", "euc_jp")}
# Labels that say nothing about 8-bit bytes: such text is treated as undeclared.
_NO_8BIT = ("", "ascii")
# Labels mislabelled UTF-8 usually carries: tried after UTF-8, not before.
_WESTERN = ("cp1252", "iso8859-1")
# Charsets undeclared mail is really written in, for the detector to choose from.
_CANDIDATES = ["cp1252", "cp1250", "cp1251", "koi8_r", "cp1253", "cp1254", "cp1255", "cp1256",
               "cp1257", "gb18030", "big5hkscs", "cp932", "euc_jp", "cp949"]
_WESTERN_DETECTED = ("cp1252", "cp1250", "cp1254", "cp1257")
# Codecs Python registers as text encodings that are no charset text is written in: "undefined"
# raises on every byte, the others rewrite escapes or host names ("\\x41" read as "A").
_NOT_CHARSETS = {"undefined", "unicode-escape", "raw-unicode-escape", "idna", "punycode"}
_LATIN = ("cp1252", "cp1250", "cp1257")  # in order of preference
_UTF8_SEQUENCE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)

# RFC 2047 §2: =?charset?encoding?encoded-text?= (RFC 2231 §5 allows charset*language).
# Broken words seen in the wild are accepted too: a "?" inside Q text, or no closing "?=".
_ENCODED_WORD = re.compile(
    r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([bBqQ])\?((?:[^?]|\?(?!=))*?)(?:\?=|$)"
)
# RFC 2047 §6.2: whitespace between two adjacent encoded words is not displayed.
_BETWEEN_WORDS = re.compile(r"(\?=)\s+(=\?)")
_FOLD = re.compile(r"\r?\n[ \t]*")


def codec_name(charset: str) -> str:
    """Python's codec for a charset label, "" when unknown or meaningless."""
    label = charset.strip().strip('"').lower()
    label = _ALIASES.get(label, label)
    if not label:
        return ""
    try:
        codec = codecs.lookup(label)
    except (LookupError, ValueError):  # ValueError: a label with a NUL byte in it
        return ""
    # Bytes-to-bytes codecs (base64, rot13, zlib) are no charset; "undefined" decodes nothing.
    if not getattr(codec, "_is_text_encoding", True) or codec.name in _NOT_CHARSETS:
        return ""
    return codec.name


def decode_bytes(
    data: bytes, charset: str, defects: list[str] | None = None, *, body: bool = False
) -> str:
    """Bytes to text: the declared charset when it fits, else UTF-8, else a likely charset.

    `body` marks text that is shown: NUL bytes go, line ends are normalised, and an
    undeclared charset may be detected (headers are too short for that).
    """
    codec = codec_name(charset)
    if charset and not codec and defects is not None:
        defects.append(f"unknown charset {charset.strip()[:40]}")
    text = _decode(data, codec, body, defects)
    if not body:
        return text
    return text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")


def _decode(data: bytes, codec: str, long_text: bool, defects: list[str] | None) -> str:
    # A specific declaration is trusted first; labels that say nothing about 8-bit bytes, or
    # that mislabelled UTF-8 usually carries (latin-1), come after UTF-8.
    trusted = codec not in _NO_8BIT and codec not in _WESTERN
    for name in (codec, "utf-8", *_SIBLINGS.get(codec, ())) if trusted else ("ascii", "utf-8"):
        try:
            return data.decode(name)
        except (UnicodeError, LookupError):
            continue
    if _mostly_utf8(data):  # UTF-8 with a few stray 8-bit bytes, or two charsets pasted together
        return data.decode("utf-8", _STRAY_BYTES)
    fallback = codec if codec in _WESTERN else _detect(data, long_text)
    try:
        return data.decode(fallback)
    except (UnicodeError, LookupError):
        if defects is not None:
            defects.append(f"undecodable text ({codec or 'no charset'})")
        return data.decode("utf-8", _STRAY_BYTES)  # binary, or worse: keep what is readable


def _mostly_utf8(data: bytes) -> bool:
    """Three quarters of the 8-bit bytes form valid UTF-8 sequences (GBK text, by chance,
    reaches about half)."""
    valid = sum(len(m) for m in _UTF8_SEQUENCE.findall(data))
    return valid > 0 and valid * 4 >= 3 * sum(b >= 0x80 for b in data)


def _stray_bytes(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: bytes that are not UTF-8 read as windows-1252 (latin-1 for its gaps)."""
    assert isinstance(error, UnicodeDecodeError)
    bad = error.object[error.start : error.end]
    return "".join(bytes([b]).decode("cp1252", "ignore") or chr(b) for b in bad), error.end


_STRAY_BYTES = "workestra-stray-bytes"
codecs.register_error(_STRAY_BYTES, _stray_bytes)


def _detect(data: bytes, long_text: bool) -> str:
    """The charset of undeclared 8-bit text that is not UTF-8.

    charset-normalizer needs some text to be right (it calls "Café" UTF-16), so short text,
    such as a header, gets a cheap guess instead; and it is asked only about charsets mail
    really uses, since given all of them it reads KOI8-R as Shift_JIS.
    """
    if long_text and sum(b >= 0x80 for b in data[:65536]) >= 8:
        try:
            results = from_bytes(data[:65536], cp_isolation=_CANDIDATES)
            best = results.best()
        except Exception:  # a detector bug must not lose the mail
            best = None
        if best is not None and best.encoding not in _WESTERN_DETECTED:
            return best.encoding
        if best is not None:
            return _latin(data, [m.encoding for m in results])
    return guess_8bit(data)


def _latin(data: bytes, others: list[str]) -> str:
    """Among the Latin code pages, the one whose 8-bit bytes read as letters inside words.

    The detector cannot tell them apart (Italian comes out as Central European); windows-1252,
    by far the most common, wins ties; Polish "dzia\xb3a" reads as "działa" only in 1250.
    When no Latin reading makes words (short Chinese text), the detector's runner-up wins.
    """
    def oddities(name: str) -> int:
        text = data.decode(name, "replace")
        return sum(
            1 for i, ch in enumerate(text)
            if ord(ch) >= 0x80 and not ch.isalpha()
            and ((i > 0 and text[i - 1].isalpha()) or (i + 1 < len(text) and text[i + 1].isalpha()))
        )
    best = min(_LATIN, key=oddities)
    others = [o for o in others if o not in _WESTERN_DETECTED]
    if others and oddities(best) * 4 > sum(b >= 0x80 for b in data):
        return others[0]
    return best


def guess_8bit(data: bytes) -> str:
    """Short undeclared text: Cyrillic (KOI8-R or windows-1251) when words are all 8-bit,
    else windows-1252. Lower-case Cyrillic sits at 0xC0-0xDF in KOI8-R, 0xE0-0xFF in 1251."""
    words = re.findall(rb"[\x80-\xff]{3,}", data)
    if sum(map(len, words)) < 0.6 * sum(b >= 0x80 for b in data):
        return "cp1252"
    high = sum(0xE0 <= b for w in words for b in w)
    return "cp1251" if high * 2 > sum(map(len, words)) else "koi8-r"


# -- header values ------------------------------------------------------------------------------


def has_surrogates(value: str) -> bool:
    """True when a header value carries raw 8-bit bytes (kept as surrogate escapes)."""
    return not value.isascii() and any("\udc80" <= ch <= "\udcff" for ch in value)


def unfold(value: str) -> str:
    """RFC 5322 §2.2.3 unfolding."""
    return _FOLD.sub(" ", value)


def header_charset(data: bytes, declared: list[str]) -> str:
    """The charset to read a header block's undeclared 8-bit bytes in, among those the mail
    declares elsewhere (its parts, its encoded words): the first one the bytes are valid in,
    or, when several are and there is enough text to tell, the one charset-normalizer prefers.

    Headers copied by a wrapper (a spam filter's report in ISO-8859-1 around a GB2312 mail)
    are in the charset of the wrapped mail, not the first one declared.
    """
    names = list(dict.fromkeys(c for c in map(codec_name, declared) if c not in _NO_8BIT))
    if not names:
        return ""
    if not data or data.isascii():
        return names[0]
    fitting = []
    for name in names:
        try:
            data.decode(name)
        except (UnicodeError, LookupError):
            continue
        fitting.append(name)
    if len(fitting) > 1 and sum(b >= 0x80 for b in data) >= 8:
        try:
            best = from_bytes(data[:16384], cp_isolation=fitting).best()
        except Exception:  # a detector bug must not lose the mail
            best = None
        if best is not None and codec_name(best.encoding) in fitting:
            return codec_name(best.encoding)
    return fitting[0] if fitting else names[0]


def decode_8bit_header(value: str, hint: str, defects: list[str] | None) -> str:
    """8-bit bytes in a header: RFC 6532 UTF-8, else the charset the body declares."""
    data = value.encode("ascii", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return decode_bytes(data, hint or guess_8bit(data), defects)


def decode_header_value(value: str, defects: list[str] | None = None, hint: str = "") -> str:
    """Unfold a raw header value and decode RFC 2047 encoded words and undeclared 8-bit bytes."""
    value = unfold(value)
    if has_surrogates(value):
        value = decode_8bit_header(value, hint, defects)
    if "=?" not in value:
        return value.strip()
    return _decode_encoded_words(value, defects).strip()


def _decode_encoded_words(value: str, defects: list[str] | None) -> str:
    """Decode RFC 2047 words, joining adjacent same-charset words before decoding.

    Joining first matters: clients split multi-byte characters across words.
    """
    value = _BETWEEN_WORDS.sub(r"\1\2", value)
    out: list[str] = []
    pending: tuple[str, bytearray] | None = None
    pos = 0
    for match in _ENCODED_WORD.finditer(value):
        if match.start() > pos:
            if pending:
                out.append(decode_bytes(bytes(pending[1]), pending[0], defects))
                pending = None
            out.append(value[pos : match.start()])
        charset, encoding, data = match.group(1).lower(), match.group(2).upper(), match.group(3)
        if not match.group(0).endswith("?=") and defects is not None:
            defects.append("unterminated encoded word")
        chunk = _word_bytes(encoding, data, defects)
        if pending and pending[0] == charset:
            pending[1].extend(chunk)
        else:
            if pending:
                out.append(decode_bytes(bytes(pending[1]), pending[0], defects))
            pending = (charset, bytearray(chunk))
        pos = match.end()
    if pending:
        out.append(decode_bytes(bytes(pending[1]), pending[0], defects))
    out.append(value[pos:])
    return "".join(out)


def _word_bytes(encoding: str, data: str, defects: list[str] | None) -> bytes:
    try:
        if encoding == "B":
            data = re.sub(r"[^A-Za-z0-9+/]", "", data)
            if len(data) % 4 == 1:  # one stray character cannot be decoded; drop it
                data = data[:-1]
            return base64.b64decode(data + "=" * (-len(data) % 4))
        # RFC 2047 §4.2: "_" stands for a space in the Q encoding.
        return quopri.decodestring(data.replace("_", " ").encode("ascii", "replace"), header=False)
    except (binascii.Error, ValueError):
        if defects is not None:
            defects.append("bad encoded word")
        return data.encode("ascii", "replace")
