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
    """RFC 2183 filename (RFC 2231 continuations included), else the Content-Type name."""
    try:
        name = part.get_filename() or part.get_param("name") or ""
    except Exception:
        name = ""
    if isinstance(name, tuple):  # RFC 2231 value the stdlib left undecoded
        charset, _lang, data = name
        name = decode_bytes(str(data).encode("latin-1", "replace"), charset or "utf-8", defects)
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


def default_name(part: Message, ctype: str) -> str:
    """A name for an unnamed part: its description, else its type, with a usual extension."""
    main, _, sub = ctype.partition("/")
    ext = mimetypes.guess_extension(ctype) or "." + (re.sub(r"[^a-z0-9]", "", sub)[:10] or "bin")
    if ctype in ("message/delivery-status", "text/rfc822-headers"):
        ext = ".txt"
    stem = description(part) or {"message": sub, "application": "file"}.get(main, main or "file")
    return stem + {".jpe": ".jpg", ".jpeg": ".jpg"}.get(ext, ext)


# -- bytes ----------------------------------------------------------------------------------------


def payload_bytes(part: Message, defects: list[str], *, release: bool = False) -> bytes:
    """A leaf part's decoded bytes; `release` drops the encoded text afterwards.

    Base64 (nearly all of a large mail) is decoded straight from the parsed text, without the
    line-split copies the stdlib makes, and released part by part, so a 30 MB message does
    not hold its attachments three times over.
    """
    payload = part.get_payload()
    cte = str(part.get("Content-Transfer-Encoding", "") or "").strip().lower()
    data: bytes | None = None
    if cte == "base64" and isinstance(payload, str) and payload.isascii():
        try:
            data = binascii.a2b_base64(payload)
            if _BASE64_JUNK.search(payload):
                defects.append("bad base64")
        except (binascii.Error, ValueError):
            data = None
    if data is None:
        data = _stdlib_payload(part, payload, defects)
    if release:
        part.set_payload("")
    return data


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


def serialise(inner: Message) -> bytes:
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
