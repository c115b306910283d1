"""Builds an outgoing message: headers that thread, a reply address that routes back, no loops.

The bytes are written here rather than by `email.generator`: every header and part is one we
make ourselves, and the generator's header folding alone cost more than the DKIM signature
(bench/outbound.py). The encodings are the standard library's: RFC 2047 words from
`email.header`, quoted-printable and base64 from `binascii`. The signer gets the headers
already split, so it does not parse the message again.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.charset import QP, Charset
from email.header import Header
from email.utils import encode_rfc2231, format_datetime, formataddr

from gateway.outbound.render import Rendered
from storage.models import utcnow

LOOP_HEADER = "X-Loop"
CRLF = b"\r\n"
MAX_LINE = 78  # RFC 5322 section 2.1.1: lines SHOULD stay within 78 characters
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_MIME_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")
_PLAIN_FILENAME = re.compile(r"^[A-Za-z0-9 ._()+,-]+$")
_QP = Charset("utf-8")
_QP.header_encoding = QP  # readable in a raw view: "[TKT-0042] Dr=C3=BCcker ..."


def clean_header(value: str) -> str:
    """No CR, LF or other control characters: a name or subject cannot inject headers."""
    return " ".join(_CONTROL.sub(" ", value).split())


def new_message_id(domain: str) -> str:
    """A Message-ID (without brackets) under our domain; recorded so threading finds it again."""
    return f"{uuid.uuid4().hex}@{domain}"


def _fold(name: str, value: str) -> bytes:
    """The header's value as sent (after the colon, CRLF included): non-ASCII text as RFC 2047
    words, long lines folded at spaces by `email.header`, short ASCII ones as they are."""
    if value.isascii() and len(name) + 2 + len(value) <= MAX_LINE:
        return b" " + value.encode("ascii") + CRLF
    header = Header(value, _QP if not value.isascii() else "us-ascii", header_name=name)
    return b" " + header.encode(linesep="\r\n", maxlinelen=MAX_LINE).encode("ascii") + CRLF


def _address(name: str, address: str) -> str:
    """`Name <addr>`; a name outside ASCII becomes RFC 2047 words, the address on a line of
    its own when the name is long."""
    name, address = clean_header(name), clean_header(address)
    if name.isascii():
        value = formataddr((name, address))
        if len(value) <= MAX_LINE - 10:  # room for "Reply-To: "
            return value
        return Header(value, "us-ascii").encode(linesep="\r\n", maxlinelen=MAX_LINE - 10)
    words = _encoded_words(name)
    if len(words.rpartition("\n")[2]) + len(address) + 3 > MAX_LINE - 10:
        return f"{words}\r\n <{address}>"
    return f"{words} <{address}>"


def _encoded_words(text: str, width: int = 66) -> str:
    """One encoded word when it fits; else several, cut between words with the space inside
    the encoded text (RFC 2047 section 6.2: whitespace between encoded words is dropped).
    Never cut inside a word: some readers would show the gap."""
    whole = _QP.header_encode(text)
    if len(whole) <= width:
        return whole
    chunks: list[str] = []
    for word in text.split(" "):
        grown = f"{chunks[-1]} {word}" if chunks else word
        if chunks and len(_QP.header_encode(grown)) <= width:
            chunks[-1] = grown
        else:
            if chunks:
                chunks[-1] += " "
            chunks.append(word)
    return "\r\n ".join(_QP.header_encode(chunk) for chunk in chunks)


def _boundary() -> str:
    """A boundary no part can contain: "=_" never occurs in quoted-printable (it writes "=" as
    "=3D") nor in base64."""
    return f"=_wk{uuid.uuid4().hex}"


def _quoted_printable(text: str) -> bytes:
    """UTF-8 text as quoted-printable lines of at most 76 characters, CRLF-terminated."""
    data = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    return binascii.b2a_qp(data, quotetabs=False, istext=True).replace(b"\n", CRLF)


def _base64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", CRLF)


def _text_part(text: str, subtype: str) -> bytes:
    return (b"Content-Type: text/" + subtype.encode() + b'; charset="utf-8"\r\n'
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + _quoted_printable(text))


def _filename(name: str) -> str:
    """The Content-Disposition parameter: quoted when plain ASCII and short; otherwise RFC 2231
    (`filename*=utf-8''...`, which every current client reads), split into numbered pieces
    (section 3) so no line passes 78 characters, and never through the middle of a %XX."""
    if _PLAIN_FILENAME.match(name) and len(name) <= 60:
        return f'filename="{name}"'
    encoded = encode_rfc2231(name, "utf-8")
    if len(encoded) <= 64:
        return f"filename*={encoded}"
    pieces, start = [], 0
    while start < len(encoded):
        end = min(start + 60, len(encoded))
        cut = encoded.rfind("%", end - 2, end)  # a %XX that the cut would split
        if end < len(encoded) and cut != -1:
            end = cut
        pieces.append(encoded[start:end])
        start = end
    return ";\r\n ".join(f"filename*{i}*={piece}" for i, piece in enumerate(pieces))


def _file_part(filename: str, content_type: str, data: bytes) -> bytes:
    """A file as an attachment, never inline, so names like Übersicht.pdf survive."""
    content_type = content_type.strip().lower()
    if not _MIME_TYPE.match(content_type):
        content_type = "application/octet-stream"
    disposition = "attachment;\r\n " + _filename(clean_header(filename) or "file")
    return (b"Content-Type: " + content_type.encode("ascii") + CRLF
            + b"Content-Transfer-Encoding: base64\r\nContent-Disposition: "
            + disposition.encode("ascii") + b"\r\n\r\n" + _base64(data))


def _multipart(boundary: str, parts: Sequence[bytes]) -> bytes:
    """RFC 2046 section 5.1.1: each delimiter on a line of its own, the closing one with --."""
    delimiter = b"--" + boundary.encode("ascii")
    out = bytearray()
    for part in parts:
        out += delimiter + CRLF + part + CRLF  # that CRLF belongs to the next delimiter
    out += delimiter + b"--" + CRLF
    return bytes(out)


@dataclass
class Composed:
    """A message as header fields (name, value as sent) and body bytes, lines ending in CRLF;
    the form dkimpy signs, so the signer need not parse what was just written."""

    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""

    def add(self, name: str, value: str, *, folded: bool = False) -> None:
        """A header field. Its value loses any control character (no CR or LF can start a
        header of its own), unless it comes `folded` already from this module (_address)."""
        if folded:
            self.headers.append((name.encode("ascii"), b" " + value.encode("ascii") + CRLF))
        else:
            self.headers.append((name.encode("ascii"), _fold(name, clean_header(value))))

    def __getitem__(self, name: str) -> str | None:
        """The first field of that name, unfolded (for callers and tests reading it back)."""
        key = name.lower().encode("ascii")
        for field_name, value in self.headers:
            if field_name.lower() == key:
                return value.decode("ascii").replace("\r\n", "").strip()
        return None

    def as_bytes(self) -> bytes:
        head = b"".join(name + b":" + value for name, value in self.headers)
        return head + CRLF + self.body


def compose(
    rendered: Rendered,
    *,
    from_name: str,
    from_address: str,
    to_name: str,
    to_address: str,
    message_id: str,
    loop_marker: str,
    reply_to: str | None = None,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    automatic: bool = True,
    attachments: Sequence[tuple[str, str, bytes]] = (),
) -> Composed:
    """multipart/alternative, text first (RFC 2046: the preferred part comes last), inside
    multipart/mixed when files come along."""
    alternative = _boundary()
    body = _multipart(alternative, [_text_part(rendered.text, "plain"),
                                    _text_part(rendered.html, "html")])
    content_type = f'multipart/alternative; boundary="{alternative}"'
    if attachments:
        mixed = _boundary()
        inner = (b'Content-Type: multipart/alternative;\r\n boundary="' + alternative.encode()
                 + b'"\r\n\r\n' + body)
        body = _multipart(mixed, [inner, *(_file_part(*f) for f in attachments)])
        content_type = f'multipart/mixed; boundary="{mixed}"'
    msg = Composed(body=body)
    msg.add("Content-Type", content_type)
    msg.add("MIME-Version", "1.0")
    msg.add("From", _address(from_name, from_address), folded=True)
    msg.add("To", _address(to_name, to_address), folded=True)
    msg.add("Subject", rendered.subject)
    msg.add("Date", format_datetime(utcnow()))
    msg.add("Message-ID", f"<{message_id}>")
    if reply_to:
        msg.add("Reply-To", _address(from_name, reply_to), folded=True)
    if in_reply_to:
        msg.add("In-Reply-To", f"<{in_reply_to}>")
    refs = [r for r in (references or []) if r][-20:]
    if refs:
        msg.add("References", " ".join(f"<{r}>" for r in refs))
    if automatic:
        msg.add("Auto-Submitted", "auto-replied")  # RFC 3834 section 5
    msg.add(LOOP_HEADER, loop_marker)  # the inbound side recognises its own mail by it
    return msg
