"""MIME parts to attachments: payload bytes, names, content types sniffed, winmail.dat opened.

Headers describing a part are the sender's claim; the bytes are the truth. A name comes from
RFC 2183/2231 parameters (or RFC 2047 words where Outlook puts them), a type from the content
(`filetype`), and Outlook's TNEF wrapper is unpacked into the files it carries.
"""

from __future__ import annotations

import binascii
import hashlib
import io
import logging
import mimetypes
import re
from email.generator import BytesGenerator
from email.message import Message

import filetype
from tnefparse.tnef import TNEF

from gateway.inbound.charsets import decode_bytes, decode_header_value, unfold
from gateway.inbound.mail import AttachmentPart

_BASE64_LINE = re.compile(r"[A-Za-z0-9+/]+=*")
_BASE64_CHARS = re.compile(r"[A-Za-z0-9+/]+")
_BASE64_NOT_DATA = re.compile(r"[^A-Za-z0-9+/=]+")
_BASE64_PAD = re.compile(r"=+")
_BASE64_JUNK_RUN = re.compile(r"[^A-Za-z0-9+/=\s]+")
_BASE64_BATCH = 1 << 16  # base64 characters decoded at a time on the slow path
_BASE64_UNUSUAL = re.compile(r"[^A-Za-z0-9+/\s]")  # junk or padding: read line by line
_TEXT_LINE = re.compile(r"[^\n]+")
_UU_ILLEGAL = re.compile(rb"[^ -`]")
_UU_ENCODINGS = ("x-uuencode", "uuencode", "x-uue", "uue")
_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f]")
_TNEF_SIGNATURE = b"\x78\x9f\x3e\x22"
_TNEF_TYPES = ("application/ms-tnef", "application/vnd.ms-tnef")
# A sniffed container type does not overrule a declared format built on that container.
_CONTAINERS = {
    "application/zip": ("officedocument", "opendocument", "epub", "java-archive", "android",
                        "zip", "xpsdocument", "vnd.ms-", "x-itunes"),
    "application/x-ole-storage": ("msword", "ms-excel", "ms-powerpoint", "ms-outlook",
                                  "vnd.ms-", "visio"),
}
_GENERIC = {"application/octet-stream"}

logging.getLogger("tnefparse").setLevel(logging.ERROR)  # it warns on every odd checksum


def new_attachment(
    filename: str, declared: str, data: bytes, *, inline: bool = False,
    content_id: str | None = None,
) -> AttachmentPart:
    """An AttachmentPart whose content_type is what the bytes are, declared_type what was said."""
    return AttachmentPart(
        filename=filename,
        content_type=sniff_type(data, declared),
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        inline=inline,
        content_id=content_id,
        declared_type=declared,
    )


def sniff_type(data: bytes, declared: str) -> str:
    """The type the content shows (magic numbers); the declared one when nothing is known.

    Mail parts arrive as application/octet-stream, image/jpg, or as a lie (an .exe sent as
    text/plain); a viewer or virus scanner must get the real type.
    """
    if declared.startswith("message/"):
        return declared
    try:
        found = filetype.guess_mime(data[:8192])
    except Exception:  # a matcher bug must not lose the attachment
        found = None
    if not found or found in _GENERIC or found == declared:
        return declared
    if any(marker in declared for marker in _CONTAINERS.get(found, ())):
        return declared
    return found


def is_binary(data: bytes) -> bool:
    """Content a known file type starts with, and control bytes text never has (ESC excepted:
    ISO-2022-JP uses it)."""
    return bool(_CONTROL.search(data[:1024])) and sniff_type(data, "") != ""


# -- what a part is -----------------------------------------------------------------------------


def content_type(part: Message) -> str:
    try:
        return part.get_content_type().lower()
    except Exception:
        return "text/plain"


def disposition(part: Message) -> str:
    try:
        value = part.get("Content-Disposition")
        return str(value).split(";", 1)[0].strip().lower() if value else ""
    except Exception:
        return ""


def content_id(part: Message) -> str | None:
    """RFC 2392 Content-ID without angle brackets, the key of cid: URLs."""
    try:
        value = part.get("Content-ID")
    except Exception:
        return None
    if not value:
        return None
    return unfold(str(value)).strip().strip("<>").strip() or None


def filename(part: Message, defects: list[str], hint: str) -> str:
    """RFC 2183 filename (RFC 2231 continuations included), else the Content-Type name.

    RFC 2231 values are decoded here, not by the stdlib, which reads an empty or unknown
    charset as US-ASCII and a mislabelled one without a second try, turning "Über" into "Ã\x9cber".
    """
    name: object = ""
    for param, header in (("filename", "content-disposition"), ("name", "content-type")):
        try:
            name = part.get_param(param, header=header) or ""
        except Exception:
            name = ""
        if name:
            break
    if isinstance(name, tuple):  # RFC 2231: (charset, language, bytes as latin-1 text)
        charset, _lang, data = name
        raw = str(data or "").encode("latin-1", "surrogateescape")
        name = decode_bytes(raw, str(charset or "") or hint, defects)
    name = str(name)
    # Outlook and others put RFC 2047 words inside quoted parameters, against RFC 2047 §5.
    return safe_filename(decode_header_value(name, defects, hint)) if name.strip() else ""


def safe_filename(name: str) -> str:
    """No path separators or control characters, at most 200 characters."""
    name = re.sub(r"[\x00-\x1f/\\]", "_", name).strip().strip(".")
    return name[:200]


def description(part: Message) -> str:
    """RFC 2045 §8 Content-Description, a human label some MTAs give unnamed parts."""
    try:
        return safe_filename(decode_header_value(str(part.get("Content-Description") or "")))
    except Exception:
        return ""


def default_name(part: Message, ctype: str, sniffed: str = "") -> str:
    """A name for an unnamed part: its description, else the filename Outlook and others put
    in the Content-ID ("image001.png@01D9..."), else its type, with a usual extension.

    A declared type no extension is known for ("application/others") gives way to the type the
    bytes show, so the file opens with the right program.
    """
    stem = description(part)
    if not stem:
        cid_name = _content_id_name(part)
        if cid_name:
            return cid_name
    if not mimetypes.guess_extension(ctype) and sniffed and sniffed != ctype and (
        mimetypes.guess_extension(sniffed)
    ):
        ctype = sniffed
    main, _, sub = ctype.partition("/")
    ext = mimetypes.guess_extension(ctype) or "." + (re.sub(r"[^a-z0-9]", "", sub)[:10] or "bin")
    if ctype in ("message/delivery-status", "text/rfc822-headers"):
        ext = ".txt"
    stem = stem or {"message": sub, "application": "file"}.get(main, main or "file")
    return stem + {".jpe": ".jpg", ".jpeg": ".jpg"}.get(ext, ext)


def _content_id_name(part: Message) -> str:
    """The local part of the Content-ID when it is a filename with a known extension; the
    random ids other clients use ("part1.06090408.01060107@x") are not."""
    local = (content_id(part) or "").rpartition("@")[0] or ""
    if not re.fullmatch(r"[^\s<>@\x00-\x1f/\\]{1,150}\.[A-Za-z][A-Za-z0-9]{1,5}", local):
        return ""
    return safe_filename(local) if mimetypes.guess_type(local)[0] else ""


# -- bytes ----------------------------------------------------------------------------------------


def payload_bytes(part: Message, defects: list[str], *, release: bool = False) -> bytes:
    """A leaf part's decoded bytes; `release` drops the encoded text afterwards.

    Base64 (nearly all of a large mail) is decoded straight from the parsed text, without the
    line-split copies the stdlib makes, and released part by part, so a 30 MB message does
    not hold its attachments three times over. Broken base64 and uuencode are decoded as far
    as they go; what cannot be decoded at all is kept as it came.
    """
    payload = raw_payload(part)
    cte = str(part.get("Content-Transfer-Encoding", "") or "").strip().lower()
    data: bytes | None = None
    if cte == "base64" and isinstance(payload, str):
        data = _base64(payload, defects)
    elif cte in _UU_ENCODINGS and isinstance(payload, str):
        data = _uudecode(payload.encode("ascii", "surrogateescape"), defects)
    if data is None:
        data = _stdlib_payload(part, payload, defects)
    if release:
        part.set_payload("")
    return data


def raw_payload(part: Message) -> object:
    """The payload as parsed, 8-bit bytes kept (as surrogate escapes): get_payload() would
    replace them with U+FFFD in a leaf part, losing them."""
    payload = getattr(part, "_payload", None)
    return payload if isinstance(payload, str) else part.get_payload()


def _base64(payload: str, defects: list[str]) -> bytes:
    """Base64 as senders really write it: junk characters skipped, a lone last character
    (six bits, no byte) dropped, and blocks each padded on their own (some mailers encode line
    by line) all decoded, where binascii would stop at the first padding and lose the rest.
    Text that is mostly not base64 at all (8-bit bytes labelled base64) is kept as it came."""
    pad = payload.find("=")
    if pad < 0 or not _BASE64_CHARS.search(payload, pad):
        try:
            data = binascii.a2b_base64(payload) if payload.isascii() else None
        except (binascii.Error, ValueError):
            data = None
        if data is not None:
            if _BASE64_JUNK_RUN.search(payload):
                defects.append("bad base64")
            return data
    defects.append("bad base64")
    if _mostly_not_base64(payload):
        return payload.encode("utf-8", "surrogateescape")
    return _base64_lines(payload)


def _mostly_not_base64(payload: str) -> bool:
    """A quarter or more of the visible characters are not base64 ones; counted a slice at a
    time, without a filtered copy of the payload."""
    visible = sum(
        sum(map(len, payload[start : start + _BASE64_BATCH].split()))
        for start in range(0, len(payload), _BASE64_BATCH)
    )
    junk = sum(run.end() - run.start() for run in _BASE64_JUNK_RUN.finditer(payload))
    return (visible - junk) * 4 < visible * 3


def _base64_lines(payload: str) -> bytes:
    """Broken base64 decoded into one buffer, about 64 KB of text copied at a time (not the
    whole payload, several times over): batches of clean lines in one go, the others (junk
    characters, padding) line by line.

    After data padded with "=", a line is more data only when it looks like a base64 line
    (a whole number of quartets, or as long as the data lines before the padding): "Thanks"
    or a list's footer after the file is text, not another block.
    """
    out = bytearray()
    pending: list[str] = []  # base64 characters of the current block not yet decoded
    size = 0
    width = 0  # the longest data line before the padding
    padded = False
    pos, length = 0, len(payload)
    while pos < length:
        end = payload.find("\n", min(pos + _BASE64_BATCH, length))
        end = length if end < 0 else end + 1
        if not padded and not _BASE64_UNUSUAL.search(payload, pos, end):
            words = payload[pos:end].split()
            if words:
                width = max(width, max(map(len, words)))
                pending.append("".join(words))
                size += len(pending[-1])
        else:
            for found in _TEXT_LINE.finditer(payload, pos, end):
                line = found.group().strip()
                if not line:
                    continue
                if padded and not _more_base64(line, width):
                    pos = length  # text after the data ended (a signature, a footer)
                    break
                if _BASE64_CHARS.fullmatch(line):
                    pending.append(line)
                    size += len(line)
                    if not padded:
                        width = max(width, len(line))
                    continue
                # Junk characters are skipped; a run of "=" ends a block.
                for index, block in enumerate(_BASE64_PAD.split(_BASE64_NOT_DATA.sub("", line))):
                    if index:
                        size = _flush_base64(out, pending, end=True)
                    pending.append(block)
                    size += len(block)
                padded = padded or "=" in line
        if size >= _BASE64_BATCH:
            size = _flush_base64(out, pending, end=False)
        pos = max(pos, end)
    _flush_base64(out, pending, end=True)
    return bytes(out)


def _more_base64(line: str, width: int) -> bool:
    if not _BASE64_LINE.fullmatch(line):
        return False
    return len(line) % 4 == 0 or (width >= 8 and len(line) == width)


def _flush_base64(out: bytearray, pending: list[str], *, end: bool) -> int:
    """Decode the pending characters into `out`: all of them at the end of a block (a lone
    last character, six bits and no byte, dropped), else whole quartets, keeping the rest."""
    text = "".join(pending)
    pending.clear()
    rest = len(text) % 4
    if end:
        text = text[:-1] if rest == 1 else text + "=" * (-rest % 4)
    elif rest:
        text, tail = text[:-rest], text[-rest:]
        pending.append(tail)
    if text:
        out += binascii.a2b_base64(text)
    return len(pending[0]) if pending else 0


def _uudecode(encoded: bytes, defects: list[str]) -> bytes | None:
    """uuencode, with or without its "begin" line (the stdlib needs one and otherwise returns
    the encoded text), decoded as far as it goes; None when no line decodes.

    Without "begin", text before the data is skipped: the data starts at the first line that
    decodes and is as long as its length character says. After that, a line that is not
    (damaged in transit, or text) is held back: a later good line or "end" shows it was inside
    the data, and what decodes of it is kept; held lines that run to the end of the part are
    a signature or a footer, and are dropped.
    """
    lines = encoded.splitlines()
    begun = False
    for index, line in enumerate(lines):
        if line.startswith(b"begin "):
            lines, begun = lines[index + 1 :], True
            break
    out = bytearray()
    held = bytearray()  # decoded lines not yet shown to be data
    decoded = damaged = False
    for line in lines:
        if line.strip() == b"end":
            out += held
            break
        if not line.strip():
            continue
        data = _uu_line(line)
        if data is not None and _uu_length_fits(line, exact=not begun):
            out += held
            out += data
            held.clear()
            decoded = begun = True
        elif begun:
            damaged = True
            if data is None and _uu_length_fits(line, exact=True):  # a character garbled
                data = _uu_line(_UU_ILLEGAL.sub(b"`", line))
            if data is not None:
                held += data
                decoded = True
    if damaged:
        defects.append("bad uuencode")
    return bytes(out) if decoded else None


def _uu_line(line: bytes) -> bytes | None:
    try:
        return binascii.a2b_uu(line)
    except (binascii.Error, ValueError):
        # Some encoders pad lines wrongly; the line's length byte says how much is data.
        try:
            return binascii.a2b_uu(line[: (((line[0] - 32) & 63) * 4 + 5) // 3])
        except (binascii.Error, ValueError):
            return None


def _uu_length_fits(line: bytes, *, exact: bool) -> bool:
    """The line holds about as many characters as its length character says: at least half
    (transports strip the trailing spaces old encoders write for zero bits), and, when
    `exact`, no more than the padding and checksum character encoders add."""
    count = (line[0] - 32) & 63
    chars = len(line.rstrip(b"\r\n")) - 1
    return chars * 2 >= (count * 4 + 2) // 3 and (not exact or chars <= (count + 2) // 3 * 4 + 1)


def _stdlib_payload(part: Message, payload: object, defects: list[str]) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        defects.append("undecodable part")
        data = None
    if data is None:
        data = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
    for defect in getattr(part, "defects", []) or []:
        if "Base64" in type(defect).__name__:
            defects.append("bad base64")
    return data if isinstance(data, bytes) else bytes(data)


def serialise(inner: Message, linesep: str = "\n") -> bytes:
    """An embedded message back to bytes, keeping its header folding as it came and the line
    ends of the mail it came in (CRLF from the wire, LF from a mailbox file)."""
    if not inner.keys() and not inner.get_payload():
        return b""  # an empty message/rfc822 part (a bounce that kept nothing)
    try:
        buffer = io.BytesIO()
        policy = inner.policy.clone(linesep=linesep)
        BytesGenerator(buffer, mangle_from_=False, maxheaderlen=0, policy=policy).flatten(inner)
        return buffer.getvalue()
    except Exception:
        try:
            return inner.as_string().encode("utf-8", "surrogateescape")
        except Exception:
            return b""


# -- winmail.dat ----------------------------------------------------------------------------------


def is_tnef(att: AttachmentPart) -> bool:
    """Outlook's TNEF wrapper (MS-OXTNEF), by type or name and by its signature."""
    named = att.declared_type in _TNEF_TYPES or att.filename.lower() == "winmail.dat"
    return named and att.data[:4] == _TNEF_SIGNATURE


def expand_tnef(att: AttachmentPart, defects: list[str]) -> list[AttachmentPart]:
    """The files inside a winmail.dat; the winmail.dat itself when it holds none we can read."""
    try:
        tnef = TNEF(att.data, do_checksum=False)
        files = [(_tnef_name(a, tnef.codepage), a.data) for a in tnef.attachments]
    except Exception as exc:  # truncated or unusual TNEF: keep it as it came
        defects.append(f"undecodable winmail.dat: {type(exc).__name__}")
        return [att]
    found = []
    for index, (name, data) in enumerate(files, start=1):
        if isinstance(data, bytes) and data:
            name = safe_filename(name) or f"attachment-{index}.bin"
            declared = mimetypes.guess_type(name)[0] or "application/octet-stream"
            found.append(new_attachment(name, declared, data))
    return found or [att]


def _tnef_name(attachment: object, codepage: str | None) -> str:
    """The long filename when there is one; tnefparse assumes UTF-8 where Outlook used ANSI."""
    try:
        name = attachment.long_filename()  # type: ignore[attr-defined]
    except Exception:
        name = getattr(attachment, "_name", b"")
    if isinstance(name, bytes):
        name = decode_bytes(name, codepage or "cp1252")
    return str(name).strip("\x00").strip()
