"""Turn raw message bytes into a ParsedMail: headers, text, HTML and attachments, never raising.

This module walks the MIME tree and reads the headers; decoding text is `charsets`, turning
parts into files is `attachments`, and HTML handling is `html_text`.
"""

from __future__ import annotations

import re
from email.feedparser import FeedParser
from email.message import Message
from email.policy import Compat32
from email.utils import getaddresses
from functools import partial

from gateway.inbound import attachments as parts
from gateway.inbound.charsets import (
    codec_name,
    decode_8bit_header,
    decode_bytes,
    decode_header_value,
    has_surrogates,
    header_charset,
    unfold,
)
from gateway.inbound.html_text import html_to_text, sanitise_html
from gateway.inbound.mail import Address, AttachmentPart, ParsedMail

__all__ = ["decode_header_value", "parse", "sanitise_html"]

_MSGID = re.compile(r"<([^<>\s]+)>")
_CID_REF = re.compile(r"cid:([^\"'\s)>]+)", re.IGNORECASE)
_HEADER_LINE = re.compile(rb"^[!-9;-~]+:|^[ \t]|^From ")
_WHOLE_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")  # a well-formed encoded word
_WORD_CHARSET = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?[bBqQ]\?")
_STASHED = re.compile(r"wrkstrw(\d+)x")
_MAILTO = re.compile(r"<\s*mailto:", re.IGNORECASE)
_NAME_THEN_ADDR = re.compile(r'([^<>()]*?\S)\s+([^\s<>"(),;:@]+@[^\s<>"(),;:@]+\.[^\s<>"(),;:@]+)')
# "Jane Doe (jane@x.org)": the only address is in a comment; dot-separated labels keep it linear.
_NAME_THEN_COMMENT_ADDR = re.compile(
    r'([^<>()@]*)\(\s*([^\s<>"(),;:@]+@[^\s<>"(),;:@.]+(?:\.[^\s<>"(),;:@.]+)+)\s*\)'
)
# A MIME delimiter line (RFC 2046 §5.1.1), to find the boundary a broken multipart really uses.
_DELIMITER = re.compile(
    r"^--((?=\S*[0-9A-Za-z])[0-9A-Za-z'()+_,./:=?-]{1,70})[ \t]*\r?$", re.MULTILINE
)
_CHUNK = 1 << 16  # bytes handed to the parser at a time


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
    raw = bytes(raw or b"")
    msg = _message(raw, defects)
    declared = _declared_charsets(msg)
    hint = declared[0] if declared else ""
    head_hint = _header_hint(msg, declared, defects)
    headers = _decoded_headers(msg, defects, head_hint)
    crlf = raw.count(b"\r\n", 0, _CHUNK) * 2 > raw.count(b"\n", 0, _CHUNK)
    body = _Body(defects, hint, "\r\n" if crlf else "\n")
    try:
        body.visit(msg, depth=0)
    except Exception as exc:  # a part we did not foresee must not lose the headers
        defects.append(f"unreadable body: {type(exc).__name__}")
    body.mark_referenced_inline()
    from_ = _addresses(msg, "From", defects, head_hint)
    if not from_:
        defects.append("no From header")
    text, html = body.text(), body.html()
    if not text.strip() and html:
        text = html_to_text(html, defects)
    message_ids = _message_ids(headers.get("Message-ID", ""))
    return ParsedMail(
        from_=from_[0] if from_ else None,
        to=_addresses(msg, "To", defects, head_hint),
        cc=_addresses(msg, "Cc", defects, head_hint),
        reply_to=_addresses(msg, "Reply-To", defects, head_hint),
        subject=headers.get("Subject", "") or "",
        message_id=message_ids[0] if message_ids else None,
        in_reply_to=_message_ids(headers.get("In-Reply-To", "")),
        references=_message_ids(headers.get("References", "")),
        text=text,
        html=html,
        attachments=body.attachments,
        headers=headers,
        defects=list(dict.fromkeys(defects)),
        html_safe=sanitise_html(html) if html else None,
    )


# -- the MIME tree ------------------------------------------------------------------------------


def _message(raw: bytes, defects: list[str]) -> Message:
    """The MIME tree; a header block broken by a stray line is mended and parsed again."""
    try:
        msg = _feed(raw)
        if any(type(d).__name__ == "MissingHeaderBodySeparatorDefect" for d in msg.defects):
            head, rest = _split_header_block(raw)
            mended = _mend_header_block(head)
            if mended != head:
                msg = _feed(mended, rest)
                defects.append("malformed header block")
        return msg
    except Exception as exc:  # the parser is lenient; this is a last resort
        defects.append(f"unparseable message: {type(exc).__name__}")
        return Message(policy=_POLICY)


def _feed(*segments: bytes | memoryview) -> Message:
    """The stdlib parser fed in slices: message_from_bytes would copy the whole message
    into one str and a StringIO first, several times its size for a large mail."""
    parser = FeedParser(policy=_POLICY)
    for segment in segments:
        view = memoryview(segment)
        for start in range(0, len(view), _CHUNK):
            parser.feed(str(view[start : start + _CHUNK], "ascii", "surrogateescape"))
    return parser.close()


def _split_header_block(raw: bytes) -> tuple[bytes, memoryview]:
    """The header block and (uncopied) the rest, from the first blank line on."""
    end = raw.find(b"\r\n\r\n", 0, 65536)
    if end < 0:
        end = raw.find(b"\n\n")
    if end < 0:
        return raw, memoryview(b"")
    return raw[:end], memoryview(raw)[end:]


def _mend_header_block(head: bytes) -> bytes:
    """Turn non-header lines inside the header block into continuations (RFC 5322 §2.2.3).

    Seen in the wild: unindented base64 in X- headers, a banner line before the first header.
    """
    lines = head.splitlines(keepends=True)
    while lines and not _HEADER_LINE.match(lines[0]):
        lines.pop(0)
    return b"".join(ln if _HEADER_LINE.match(ln) else b" " + ln for ln in lines)


def _declared_charsets(msg: Message) -> list[str]:
    """Every charset declared anywhere, in order (parts first, then encoded words in headers):
    undeclared 8-bit parts and headers of the same mail are usually in one of them."""
    found: list[str] = []
    try:
        for part in msg.walk():
            charset = part.get_content_charset()
            if charset and codec_name(charset) not in ("", "ascii"):
                found.append(charset)
        for _name, value in msg.raw_items():
            for charset in _WORD_CHARSET.findall(str(value)):
                if codec_name(charset) not in ("", "ascii"):
                    found.append(charset)
    except Exception:
        pass
    return list(dict.fromkeys(found))


def _header_hint(msg: Message, declared: list[str], defects: list[str]) -> str:
    """The charset for the header block's undeclared 8-bit bytes; a surprise there is a
    defect, and the headers are then read without a hint."""
    try:
        return header_charset(_raw_header_bytes(msg), declared)
    except Exception as exc:
        defects.append(f"unreadable header charset: {type(exc).__name__}")
        return ""


def _raw_header_bytes(msg: Message) -> bytes:
    """The 8-bit header values of the top-level header block, as they came."""
    try:
        values = [str(v) for _k, v in msg.raw_items() if has_surrogates(str(v))]
    except Exception:
        return b""
    return b"\n".join(v.encode("ascii", "surrogateescape") for v in values)


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


def _addresses(msg: Message, name: str, defects: list[str], hint: str) -> list[Address]:
    """Addresses from every instance of a header; names decoded after splitting (commas)."""
    try:
        raw_values = [str(v) for k, v in msg.raw_items() if k.lower() == name.lower()]
    except Exception:
        return []
    result: list[Address] = []
    for raw_value in raw_values:
        try:
            result.extend(_header_addresses(raw_value, defects, hint))
        except Exception:  # a header we did not foresee must not lose the mail
            defects.append(f"unreadable {name} header")
    return result


def _header_addresses(raw_value: str, defects: list[str], hint: str) -> list[Address]:
    raw_value = unfold(raw_value)
    if has_surrogates(raw_value):
        raw_value = decode_8bit_header(raw_value, hint, defects)
    # An encoded word holding a comma (against RFC 2047 §5) must not split the address list.
    words: list[str] = []
    raw_value = _mend_address_list(_WHOLE_WORD.sub(partial(_stash, words), raw_value))
    result: list[Address] = []
    for display, addr in getaddresses([raw_value]):
        addr = _unstash(words, addr).strip().strip("<>").lower()
        display = _unstash(words, display)
        display = decode_header_value(display, defects).strip().strip('"').strip()
        if "=?" in addr:  # an encoded word where an address should be: decode, retry
            found = re.search(r"[\w.+'-]+@[\w.-]+", decode_header_value(addr, defects))
            addr = found.group(0).lower() if found else ""
        if "@" not in addr and not re.fullmatch(r"[a-z0-9._+-]+", addr):
            continue  # not an address; a bare local part such as MAILER-DAEMON is kept
        result.append(Address(name=display if display.lower() != addr else "", address=addr))
    return result


def _mend_address_list(value: str) -> str:
    """Addresses as some web forms and scripts write them, made RFC 5322 for the parser:
    "<mailto:a@b.c>", a name before a bare address ("Jane Doe jane@x.org"), which
    getaddresses would take as one address with a space in it, and a name before its address
    in parentheses ("Jane Doe (jane@x.org)"), which it would read as the address "Jane".
    Each comma-separated address is mended on its own (one with <> stays as it is); a group
    ("team: a@x, b@y;", RFC 5322 §3.4) is the parser's to read, and is left alone."""
    value = _MAILTO.sub("<", value)
    if "@" not in value:
        return value
    segments = _split_outside_quotes(value)
    if any(_opens_group(segment) for segment in segments):
        return value
    for index, segment in enumerate(segments):
        if len(segment) > 500 or "<" in segment:  # no such name; the pattern is not for long text
            continue
        found = _NAME_THEN_ADDR.fullmatch(segment.strip()) or (
            _NAME_THEN_COMMENT_ADDR.fullmatch(segment.strip()))
        if found is None or "@" in found.group(1):
            continue
        segments[index] = f"{_quoted(found.group(1).strip())} <{found.group(2)}>"
    return ",".join(segments)


def _quoted(name: str) -> str:
    """A display name as an RFC 5322 quoted string, unless it is one already or empty."""
    if not name or (len(name) > 1 and name.startswith('"') and name.endswith('"')):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _opens_group(segment: str) -> bool:
    """A ":" outside quotes before the segment's address: RFC 5322 group syntax."""
    unquoted = "".join(segment.split('"')[::2])
    return ":" in re.split(r"[<@]", unquoted, maxsplit=1)[0]


def _split_outside_quotes(value: str) -> list[str]:
    """The comma-separated parts of an address list; a comma inside quotes is a name's."""
    segments, start, quoted = [], 0, False
    for index, char in enumerate(value):
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            segments.append(value[start:index])
            start = index + 1
    segments.append(value[start:])
    return segments


def _stash(words: list[str], match: re.Match[str]) -> str:
    words.append(match.group(0))
    return f"wrkstrw{len(words) - 1}x"


def _unstash(words: list[str], value: str) -> str:
    return _STASHED.sub(lambda m: words[int(m.group(1))], value) if words else value


def _message_ids(value: str) -> list[str]:
    """Message ids without angle brackets (RFC 5322 §3.6.4); bare ids accepted when no <> at all."""
    ids = _MSGID.findall(value)
    if not ids and value.strip() and "@" in value:
        ids = [w.strip("<>,;") for w in value.split() if "@" in w]
    return list(dict.fromkeys(i for i in ids if i))


# -- body ---------------------------------------------------------------------------------------


class _Body:
    """Walks the MIME tree once, keeping body text, HTML and attachments in document order.

    Each leaf's encoded text is released as soon as it is decoded, to keep peak memory low.
    """

    def __init__(self, defects: list[str], hint: str, linesep: str = "\n") -> None:
        self.defects = defects
        self.hint = hint
        self.linesep = linesep  # of the raw mail, for attached mails written back to bytes
        self.plain: list[str] = []
        self.htmls: list[str] = []
        self.attachments: list[AttachmentPart] = []

    def visit(self, part: Message, *, depth: int) -> None:
        self._note_defects(part)
        ctype = parts.content_type(part)
        if depth > 50:
            self.defects.append("MIME nesting too deep")
            return
        if ctype == "message/rfc822":
            self._attach_message(part)
            return
        if ctype.startswith("message/") and part.is_multipart():  # e.g. RFC 3464 delivery-status
            for inner in part.get_payload():  # kept whole, but what is broken inside is named
                for descendant in inner.walk():
                    self._note_defects(descendant)
            data = b"".join(parts.serialise(p, self.linesep) for p in part.get_payload())
            self._attach(part, ctype, data=data)
            return
        if ctype.startswith("multipart/") and not part.is_multipart():
            self._recover_multipart(part, depth)
            return
        if part.is_multipart():
            payload = part.get_payload()
            children = payload if isinstance(payload, list) else []
            if ctype == "multipart/alternative":
                self._visit_alternative(children, depth)
            else:
                for child in children:
                    self.visit(child, depth=depth + 1)
            return
        data = parts.payload_bytes(part, self.defects, release=True)
        if self._is_attachment(part, ctype, data):
            self._attach(part, ctype, data)
            return
        # An undeclared part is most likely in the charset its siblings declare.
        charset = part.get_content_charset() or self.hint
        text = decode_bytes(data, charset, self.defects, body=True)
        (self.htmls if ctype == "text/html" else self.plain).append(text)

    def _visit_alternative(self, children: list[Message], depth: int) -> None:
        """RFC 2046 §5.1.4: alternatives in increasing faithfulness; keep the text of the first
        alternative that has text and the HTML of the last that has HTML, each whole (an
        alternative may be a multipart/mixed of several pieces: HTML, a file, more HTML)."""
        plain_before, html_before = len(self.plain), len(self.htmls)
        plain: list[str] | None = None
        html: list[str] | None = None
        for child in children:
            p0, h0 = len(self.plain), len(self.htmls)
            self.visit(child, depth=depth + 1)
            if plain is None and len(self.plain) > p0:
                plain = self.plain[p0:]
            if len(self.htmls) > h0:
                html = self.htmls[h0:]
        self.plain[plain_before:] = plain or []
        self.htmls[html_before:] = html or []

    def _recover_multipart(self, part: Message, depth: int) -> None:
        """A multipart whose declared boundary never occurs: parse it again with the boundary
        its body actually uses, so the text and files of malformed mail are not lost."""
        payload = parts.raw_payload(part)
        if not isinstance(payload, str) or not payload.strip():
            return  # nothing inside (e.g. a nested part reusing its parent's boundary)
        found = _DELIMITER.search(payload)
        if found and depth < 50:
            head = f'Content-Type: multipart/mixed; boundary="{found.group(1)}"\r\n\r\n'
            inner = _feed(head.encode("ascii", "surrogateescape"),
                          payload.encode("ascii", "surrogateescape"))
            if inner.is_multipart():
                self.visit(inner, depth=depth + 1)
                return
        # No delimiter at all: the body is the text, in the part's own transfer encoding.
        data = parts.payload_bytes(part, self.defects, release=True)
        charset = part.get_content_charset() or self.hint
        self.plain.append(decode_bytes(data, charset, self.defects, body=True))

    def _is_attachment(self, part: Message, ctype: str, data: bytes) -> bool:
        """Body text is an unnamed text/plain or text/html part not marked as an attachment,
        and not binary content (an executable declared as text/plain is a file)."""
        if parts.disposition(part) == "attachment":
            return True
        if ctype in ("text/plain", "text/html"):
            return bool(parts.filename(part, self.defects, self.hint)) or parts.is_binary(data)
        return True

    def _attach(self, part: Message, ctype: str, data: bytes) -> None:
        name = parts.filename(part, self.defects, self.hint) or parts.default_name(
            part, ctype, parts.sniff_type(data, ctype)
        )
        att = parts.new_attachment(name, ctype, data, content_id=parts.content_id(part))
        att.inline = parts.disposition(part) == "inline" and (
            ctype.startswith("image/") or att.content_type.startswith("image/")
        )
        if parts.is_tnef(att):
            self.attachments.extend(parts.expand_tnef(att, self.defects))
        else:
            self.attachments.append(att)

    def _attach_message(self, part: Message) -> None:
        """An attached mail (RFC 2046 §5.2.1) is kept whole as a .eml file, its text apart."""
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else None
        if inner is None:
            data = parts.payload_bytes(part, self.defects, release=True)
            subject = ""
        else:
            data = parts.serialise(inner, self.linesep)
            hint = _header_hint(inner, _declared_charsets(inner) or [self.hint], self.defects)
            subject = decode_header_value(str(inner.get("Subject", "") or ""), None, hint)
        name = parts.filename(part, self.defects, self.hint) or (
            parts.safe_filename(subject or parts.description(part)) + ".eml"
        )
        self.attachments.append(
            parts.new_attachment(name, "message/rfc822", data, content_id=parts.content_id(part))
        )

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
