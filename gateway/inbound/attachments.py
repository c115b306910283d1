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

_BASE64_JUNK = re.compile(r"[^A-Za-z0-9+/=\s]")
_BASE64_DATA = re.compile(r"[A-Za-z0-9+/]")
_BASE64_LINE = re.compile(r"[A-Za-z0-9+/]*=*")
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
    if pad < 0 or not _BASE64_DATA.search(payload, pad):
        try:
            data = binascii.a2b_base64(payload) if payload.isascii() else None
        except (binascii.Error, ValueError):
            data = None
        if data is not None:
            if _BASE64_JUNK.search(payload):
                defects.append("bad base64")
            return data
    defects.append("bad base64")
    visible = re.sub(r"\s", "", payload)
    if len(re.sub(r"[^A-Za-z0-9+/=]", "", visible)) * 4 < len(visible) * 3:
        return payload.encode("utf-8", "surrogateescape")
    kept: list[str] = []
    padded = False
    for line in payload.splitlines():
        line = line.strip()
        if padded and not _BASE64_LINE.fullmatch(line):
            break  # text after the data ended (a footer a list appended), not more data
        kept.append(line)
        padded = padded or "=" in line
    clean = re.sub(r"[^A-Za-z0-9+/=]", "", "".join(kept))
    out = bytearray()
    for block in re.split(r"=+", clean):
        if len(block) % 4 == 1:
            block = block[:-1]
        if block:
            out += binascii.a2b_base64(block + "=" * (-len(block) % 4))
    return bytes(out)


def _uudecode(encoded: bytes, defects: list[str]) -> bytes | None:
    """uuencode, with or without its "begin" line (the stdlib needs one and otherwise returns
    the encoded text); None when no line decodes."""
    lines = encoded.splitlines()
    for index, line in enumerate(lines):
        if line.startswith(b"begin "):
            lines = lines[index + 1 :]
            break
    out = bytearray()
    decoded = False
    for line in lines:
        if line.strip() == b"end":
            break
        if not line.strip():
            continue
        try:
            out += binascii.a2b_uu(line)
        except (binascii.Error, ValueError):
            # Some encoders pad lines wrongly; the line's length byte says how much is data.
            try:
                out += binascii.a2b_uu(line[: (((line[0] - 32) & 63) * 4 + 5) // 3])
            except (binascii.Error, ValueError):
                defects.append("bad uuencode")
                return None
        decoded = True
    return bytes(out) if decoded else None


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
