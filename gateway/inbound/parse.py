"""Turn raw message bytes into a ParsedMail: headers, text, HTML and attachments, never raising."""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import io
import mimetypes
import quopri
import re
from email import message_from_bytes
from email.generator import BytesGenerator
from email.message import Message
from email.policy import Compat32
from email.utils import getaddresses

from inscriptis import get_text
from inscriptis.model.config import ParserConfig

from gateway.inbound.mail import Address, AttachmentPart, ParsedMail

# Charset labels seen in the wild that Python does not know, or knows as a smaller set.
_CHARSET_ALIASES = {
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "windows-874": "cp874",
    "gb2312": "gb18030",  # GB18030 is a superset; mislabelled GBK mail decodes too
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "iso-8859-1": "cp1252",  # WHATWG: ISO-8859-1 labels mean windows-1252
    "latin1": "cp1252",
    "us-ascii": "ascii",
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
    "euc-kr": "cp949",
}

# RFC 2047 §2: =?charset?encoding?encoded-text?= (RFC 2231 §5 allows charset*language).
_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?]*?)\?=")
# RFC 2047 §6.2: whitespace between two adjacent encoded words is not displayed.
_BETWEEN_WORDS = re.compile(r"(\?=)\s+(=\?)")
_MSGID = re.compile(r"<([^<>\s]+)>")
_CID_REF = re.compile(r"cid:([^\"'\s)>]+)", re.IGNORECASE)
_HTML_CONFIG = ParserConfig(display_links=True)
_HEADER_LINE = re.compile(rb"^[!-9;-~]+:|^[ \t]|^From ")
# Labels whose mail is often written in a sibling charset (Shift_JIS sent as ISO-2022-JP).
_SIBLINGS = {"iso2022_jp_ext": ("cp932", "euc_jp"), "iso2022_jp": ("cp932", "euc_jp")}


class _RawHeaders(Compat32):
    """compat32, but header values come back as stored, 8-bit bytes as surrogates.

    compat32 would wrap 8-bit values in an unknown-8bit Header and lose them to "?";
    we decode them ourselves with a charset hint.
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


_POLICY = _RawHeaders()

_DEFECT_NAMES = {
    "StartBoundaryNotFoundDefect": "broken MIME boundary",
    "CloseBoundaryNotFoundDefect": "broken MIME boundary",
    "MultipartInvariantViolationDefect": "broken MIME boundary",
    "NoBoundaryInMultipartDefect": "broken MIME boundary",
    "BoundaryError": "broken MIME boundary",
    "FirstHeaderLineIsContinuationDefect": "malformed header",
    "MissingHeaderBodySeparatorDefect": "missing blank line after headers",
    "MisplacedEnvelopeHeaderDefect": "misplaced envelope header",
    "InvalidBase64PaddingDefect": "bad base64",
    "InvalidBase64CharactersDefect": "bad base64",
    "InvalidBase64LengthDefect": "bad base64",
    "InvalidMultipartContentTransferEncodingDefect": "bad transfer encoding on multipart",
}


def parse(raw: bytes) -> ParsedMail:
    """Parse any bytes into a ParsedMail; problems become `defects`, never exceptions."""
    defects: list[str] = []
    msg = _message(bytes(raw or b""), defects)
    hint = _charset_hint(msg)
    headers = _decoded_headers(msg, defects, hint)
    body = _Body(defects, hint)
    try:
        body.visit(msg, in_alternative=False)
    except Exception as exc:  # a part we did not foresee must not lose the headers
        defects.append(f"unreadable body: {type(exc).__name__}")
    body.mark_referenced_inline()
    from_ = _addresses(msg, "From", defects, hint)
    if not from_:
        defects.append("no From header")
    text, html = body.text(), body.html()
    if not text.strip() and html:
        text = _html_to_text(html, defects)
    message_ids = _message_ids(headers.get("Message-ID", ""))
    return ParsedMail(
        from_=from_[0] if from_ else None,
        to=_addresses(msg, "To", defects, hint),
        cc=_addresses(msg, "Cc", defects, hint),
        reply_to=_addresses(msg, "Reply-To", defects, hint),
        subject=headers.get("Subject", "") or "",
        message_id=message_ids[0] if message_ids else None,
        in_reply_to=_message_ids(headers.get("In-Reply-To", "")),
        references=_message_ids(headers.get("References", "")),
        text=text,
        html=html,
        attachments=body.attachments,
        headers=headers,
        defects=list(dict.fromkeys(defects)),
    )


def _message(raw: bytes, defects: list[str]) -> Message:
    """The MIME tree; a header block broken by a stray line is mended and parsed again."""
    try:
        msg = message_from_bytes(raw, policy=_POLICY)
        if any(type(d).__name__ == "MissingHeaderBodySeparatorDefect" for d in msg.defects):
            mended = _mend_header_block(raw)
            if mended != raw:
                msg = message_from_bytes(mended, policy=_POLICY)
                defects.append("malformed header block")
        return msg
    except Exception as exc:  # the parser is lenient; this is a last resort
        defects.append(f"unparseable message: {type(exc).__name__}")
        return Message(policy=_POLICY)


def _mend_header_block(raw: bytes) -> bytes:
    """Turn non-header lines inside the header block into continuations (RFC 5322 §2.2.3).

    Seen in the wild: unindented base64 in X- headers, a banner line before the first header.
    """
    head, sep, rest = raw.partition(b"\n\n") if b"\r\n\r\n" not in raw[:65536] else (
        raw.partition(b"\r\n\r\n")
    )
    lines = head.splitlines(keepends=True)
    while lines and not _HEADER_LINE.match(lines[0]):
        lines.pop(0)
    mended = [ln if _HEADER_LINE.match(ln) else b" " + ln for ln in lines]
    return b"".join(mended) + sep + rest


def _charset_hint(msg: Message) -> str:
    """The first charset declared anywhere; undeclared 8-bit headers are usually in it."""
    try:
        for part in msg.walk():
            charset = part.get_content_charset()
            if charset and _codec(charset) not in ("", "ascii"):
                return charset
    except Exception:
        pass
    return ""


# -- headers ------------------------------------------------------------------------------------


def _decoded_headers(msg: Message, defects: list[str], hint: str) -> Message:
    """A plain header block with every value unfolded and decoded, so `.get` never raises."""
    out = Message()
    try:
        for name, value in msg.raw_items():
            out[str(name)] = decode_header_value(str(value), defects, hint)
    except Exception as exc:
        defects.append(f"unreadable headers: {type(exc).__name__}")
    return out


def decode_header_value(value: str, defects: list[str] | None = None, hint: str = "") -> str:
    """Unfold a raw header value and decode RFC 2047 encoded words and undeclared 8-bit bytes."""
    value = re.sub(r"\r?\n[ \t]*", " ", value)  # RFC 5322 §2.2.3 unfolding
    if _has_surrogates(value):
        value = _undeclared(value, hint, defects)
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
                out.append(_decode_bytes(bytes(pending[1]), pending[0], defects))
                pending = None
            out.append(value[pos : match.start()])
        charset, encoding, data = match.group(1).lower(), match.group(2).upper(), match.group(3)
        chunk = _word_bytes(encoding, data, defects)
        if pending and pending[0] == charset:
            pending[1].extend(chunk)
        else:
            if pending:
                out.append(_decode_bytes(bytes(pending[1]), pending[0], defects))
            pending = (charset, bytearray(chunk))
        pos = match.end()
    if pending:
        out.append(_decode_bytes(bytes(pending[1]), pending[0], defects))
    out.append(value[pos:])
    return "".join(out)


def _word_bytes(encoding: str, data: str, defects: list[str] | None) -> bytes:
    try:
        if encoding == "B":
            data = re.sub(r"[^A-Za-z0-9+/]", "", data)
            return base64.b64decode(data + "=" * (-len(data) % 4))
        # RFC 2047 §4.2: "_" stands for a space in the Q encoding.
        return quopri.decodestring(data.replace("_", " ").encode("ascii", "replace"), header=False)
    except (binascii.Error, ValueError):
        if defects is not None:
            defects.append("bad encoded word")
        return data.encode("ascii", "replace")


def _undeclared(value: str, hint: str, defects: list[str] | None) -> str:
    """8-bit bytes in a header: RFC 6532 UTF-8, else the charset the body declares."""
    data = value.encode("ascii", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return _decode_bytes(data, hint or _guess_8bit(data), defects)


def _guess_8bit(data: bytes) -> str:
    """Undeclared non-UTF-8 text: Cyrillic (KOI8-R or windows-1251) when words are all 8-bit,
    else windows-1252. Lower-case Cyrillic sits at 0xC0-0xDF in KOI8-R, 0xE0-0xFF in 1251."""
    words = re.findall(rb"[\x80-\xff]{3,}", data)
    if sum(map(len, words)) < 0.6 * sum(b >= 0x80 for b in data):
        return "cp1252"
    high = sum(0xE0 <= b for w in words for b in w)
    return "cp1251" if high * 2 > sum(map(len, words)) else "koi8-r"


def _addresses(msg: Message, name: str, defects: list[str], hint: str) -> list[Address]:
    """Addresses from every instance of a header; names decoded after splitting (commas)."""
    try:
        raw_values = [str(v) for k, v in msg.raw_items() if k.lower() == name.lower()]
    except Exception:
        return []
    result: list[Address] = []
    for raw_value in raw_values:
        raw_value = re.sub(r"\r?\n[ \t]*", " ", raw_value)
        if _has_surrogates(raw_value):
            raw_value = _undeclared(raw_value, hint, defects)
        try:
            pairs = getaddresses([raw_value])
        except Exception:
            defects.append(f"unreadable {name} header")
            continue
        for display, addr in pairs:
            addr = addr.strip().strip("<>").lower()
            display = decode_header_value(display, defects).strip().strip('"').strip()
            if "=?" in addr:  # an encoded word where an address should be: decode, retry
                found = re.search(r"[\w.+'-]+@[\w.-]+", decode_header_value(addr, defects))
                addr = found.group(0).lower() if found else ""
            if "@" not in addr and not re.fullmatch(r"[a-z0-9._+-]+", addr):
                continue  # not an address; a bare local part such as MAILER-DAEMON is kept
            result.append(Address(name=display if display.lower() != addr else "", address=addr))
    return result


def _message_ids(value: str) -> list[str]:
    """Message ids without angle brackets (RFC 5322 §3.6.4); bare ids accepted when no <> at all."""
    ids = _MSGID.findall(value)
    if not ids and value.strip() and "@" in value:
        ids = [w.strip("<>,;") for w in value.split() if "@" in w]
    return list(dict.fromkeys(i for i in ids if i))


# -- body ---------------------------------------------------------------------------------------


class _Body:
    """Walks the MIME tree once, keeping body text, HTML and attachments in document order."""

    def __init__(self, defects: list[str], hint: str) -> None:
        self.defects = defects
        self.hint = hint
        self.plain: list[str] = []
        self.htmls: list[str] = []
        self.attachments: list[AttachmentPart] = []

    def visit(self, part: Message, *, in_alternative: bool, depth: int = 0) -> None:
        self._note_defects(part)
        ctype = _content_type(part)
        if depth > 50:
            self.defects.append("MIME nesting too deep")
            return
        if ctype == "message/rfc822":
            self._attach_message(part)
            return
        if ctype.startswith("message/") and part.is_multipart():  # e.g. RFC 3464 delivery-status
            self._attach(part, ctype, data=b"".join(_serialise(p) for p in part.get_payload()))
            return
        if part.is_multipart():
            payload = part.get_payload()
            children = payload if isinstance(payload, list) else []
            if ctype == "multipart/alternative":
                self._visit_alternative(children, depth)
            else:
                for child in children:
                    self.visit(child, in_alternative=in_alternative, depth=depth + 1)
            return
        if self._is_attachment(part, ctype):
            self._attach(part, ctype)
            return
        data = _payload_bytes(part, self.defects)
        text = _decode_bytes(data, part.get_content_charset() or "", self.defects, body=True)
        if ctype == "text/html":
            self.htmls.append(text)
        else:
            self.plain.append(text)

    def _visit_alternative(self, children: list[Message], depth: int) -> None:
        """RFC 2046 §5.1.4: alternatives in increasing faithfulness; keep one text and one HTML."""
        plain_before, html_before = len(self.plain), len(self.htmls)
        for child in children:
            self.visit(child, in_alternative=True, depth=depth + 1)
        if len(self.plain) - plain_before > 1:
            self.plain[plain_before:] = [self.plain[plain_before]]
        if len(self.htmls) - html_before > 1:
            self.htmls[html_before:] = [self.htmls[-1]]

    def _is_attachment(self, part: Message, ctype: str) -> bool:
        """Body text is an unnamed text/plain or text/html part not marked as an attachment."""
        if _disposition(part) == "attachment":
            return True
        if ctype in ("text/plain", "text/html"):
            return bool(self._filename(part))
        return True

    def _attach(self, part: Message, ctype: str, data: bytes | None = None) -> None:
        if data is None:
            data = _payload_bytes(part, self.defects)
        filename = self._filename(part) or _default_name(part, ctype)
        content_id = _content_id(part)
        inline = _disposition(part) == "inline" and ctype.startswith("image/")
        self.attachments.append(
            AttachmentPart(
                filename=filename,
                content_type=ctype,
                data=data,
                sha256=hashlib.sha256(data).hexdigest(),
                inline=inline,
                content_id=content_id,
            )
        )

    def _attach_message(self, part: Message) -> None:
        """An attached mail (RFC 2046 §5.2.1) is kept whole as a .eml file."""
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else None
        if inner is None:
            data = _payload_bytes(part, self.defects)
            subject = ""
        else:
            data = _serialise(inner)
            subject = decode_header_value(str(inner.get("Subject", "") or ""), None, self.hint)
        filename = self._filename(part) or _safe_filename(subject or _description(part)) + ".eml"
        self.attachments.append(
            AttachmentPart(
                filename=filename,
                content_type="message/rfc822",
                data=data,
                sha256=hashlib.sha256(data).hexdigest(),
                inline=False,
                content_id=_content_id(part),
            )
        )

    def _filename(self, part: Message) -> str:
        return _filename(part, self.defects, self.hint)

    def mark_referenced_inline(self) -> None:
        """Images the HTML shows through cid: URLs (RFC 2392) are inline."""
        refs = {m.lower() for h in self.htmls for m in _CID_REF.findall(h)}
        for att in self.attachments:
            if att.content_id and att.content_id.lower() in refs:
                att.inline = True

    def text(self) -> str:
        return "\n\n".join(t.strip("\n") for t in self.plain if t.strip()).strip("\n")

    def html(self) -> str | None:
        htmls = [h for h in self.htmls if h.strip()]
        return "\n".join(htmls) if htmls else None

    def _note_defects(self, part: Message) -> None:
        for defect in getattr(part, "defects", []) or []:
            name = type(defect).__name__
            self.defects.append(_DEFECT_NAMES.get(name, name.removesuffix("Defect").lower()))


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type().lower()
    except Exception:
        return "text/plain"


def _disposition(part: Message) -> str:
    try:
        value = part.get("Content-Disposition")
        return str(value).split(";", 1)[0].strip().lower() if value else ""
    except Exception:
        return ""


def _content_id(part: Message) -> str | None:
    try:
        value = part.get("Content-ID")
    except Exception:
        return None
    if not value:
        return None
    return str(value).strip().strip("<>").strip() or None


def _filename(part: Message, defects: list[str], hint: str) -> str:
    """RFC 2183 filename (RFC 2231 continuations included), else the Content-Type name."""
    try:
        name = part.get_filename() or part.get_param("name") or ""
    except Exception:
        name = ""
    if isinstance(name, tuple):  # RFC 2231 value the stdlib left undecoded
        charset, _lang, data = name
        name = _decode_bytes(str(data).encode("latin-1", "replace"), charset or "utf-8", defects)
    name = str(name)
    # Outlook and others put RFC 2047 words inside quoted parameters, against RFC 2047 §5.
    return _safe_filename(decode_header_value(name, defects, hint)) if name.strip() else ""


def _safe_filename(name: str) -> str:
    name = re.sub(r"[\x00-\x1f/\\]", "_", name).strip().strip(".")
    return name[:200]


def _description(part: Message) -> str:
    """RFC 2045 §8 Content-Description, a human label some MTAs give unnamed parts."""
    try:
        return _safe_filename(decode_header_value(str(part.get("Content-Description") or "")))
    except Exception:
        return ""


def _default_name(part: Message, ctype: str) -> str:
    """A name for an unnamed part: its description, else its type, with a usual extension."""
    main, _, sub = ctype.partition("/")
    ext = mimetypes.guess_extension(ctype) or "." + (re.sub(r"[^a-z0-9]", "", sub)[:10] or "bin")
    if ctype in ("message/delivery-status", "text/rfc822-headers"):
        ext = ".txt"
    stem = _description(part) or {"message": sub, "application": "file"}.get(main, main or "file")
    return stem + {".jpe": ".jpg", ".jpeg": ".jpg"}.get(ext, ext)


def _payload_bytes(part: Message, defects: list[str]) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        defects.append("undecodable part")
        data = None
    if data is None:
        payload = part.get_payload()
        data = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
    return data if isinstance(data, bytes) else bytes(data)


def _serialise(inner: Message) -> bytes:
    """An embedded message back to bytes, keeping its header folding as it came."""
    try:
        buffer = io.BytesIO()
        BytesGenerator(buffer, mangle_from_=False, maxheaderlen=0).flatten(inner)
        return buffer.getvalue()
    except Exception:
        try:
            return inner.as_string().encode("utf-8", "surrogateescape")
        except Exception:
            return b""


def _has_surrogates(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def _codec(charset: str) -> str:
    label = charset.strip().strip('"').lower()
    label = _CHARSET_ALIASES.get(label, label)
    if not label:
        return ""
    try:
        return codecs.lookup(label).name
    except LookupError:
        return ""


def _decode_bytes(
    data: bytes, charset: str, defects: list[str] | None = None, *, body: bool = False
) -> str:
    """Bytes to text: the declared charset when it fits, else UTF-8, else windows-1252.

    Declared charsets are often wrong (8-bit text labelled us-ascii, UTF-8 labelled latin-1),
    so a strict decode decides; nothing here raises.
    """
    codec = _codec(charset)
    if charset and not codec and defects is not None:
        defects.append(f"unknown charset {charset.strip()[:40]}")
    fallback = "cp1252" if codec or data.isascii() else _guess_8bit(data)
    tries = [c for c in (codec, "utf-8", *_SIBLINGS.get(codec, ()), fallback) if c]
    if codec in ("ascii", "cp1252", "iso8859-1") and not data.isascii():
        tries = ["utf-8", codec]  # mislabelled 8-bit: UTF-8 is far likelier
    for name in dict.fromkeys(tries):
        try:
            text = data.decode(name)
            break
        except (UnicodeDecodeError, LookupError):
            continue
    else:
        if defects is not None:
            defects.append(f"undecodable text ({charset or 'no charset'})")
        text = data.decode(codec or "utf-8", "replace")
    text = text.replace("\x00", "")
    return text.replace("\r\n", "\n").replace("\r", "\n") if body else text


def _html_to_text(html: str, defects: list[str]) -> str:
    """HTML to readable text (scripts and styles dropped, links kept as text) with inscriptis."""
    try:
        return get_text(html, _HTML_CONFIG).strip("\n")
    except Exception:
        defects.append("unreadable HTML")
        return re.sub(r"<[^>]*>", " ", html)

