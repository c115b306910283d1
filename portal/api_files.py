"""Files agents upload: at most 5 of 10 MB each, of an allowlisted type, proven by the bytes.

The extension, the declared Content-Type and the sniffed content (`filetype`) must all name
the same allowlisted format: a renamed executable or an HTML page posing as a PNG is refused.
Text formats (plain text, CSV, SVG) have no magic number; for them the bytes must hold no
NUL and match no binary format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import filetype

from gateway.intake import NewFile
from portal.api_auth import ApiError

MAX_FILES = 5
MAX_FILE_SIZE = 10 * 1024 * 1024
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_UNNAMED = "application/octet-stream"  # what a client declares when it does not know


@dataclass(frozen=True)
class Kind:
    mime: str  # what we store and serve it as
    declared: frozenset[str]  # Content-Types a client may call it (besides octet-stream)
    sniffed: frozenset[str]  # what filetype may find in it; empty for text formats
    marker: bytes | None = None  # for containers: a name that must occur inside


def _kind(mime: str, aliases: tuple[str, ...] = (), sniffed: tuple[str, ...] = (),
          marker: bytes | None = None) -> Kind:
    return Kind(mime, frozenset((mime, *aliases)), frozenset(sniffed), marker)


_DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
_XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ALLOWED: dict[str, Kind] = {
    "jpg": _kind("image/jpeg", ("image/jpg", "image/pjpeg"), ("image/jpeg",)),
    "jpeg": _kind("image/jpeg", ("image/jpg", "image/pjpeg"), ("image/jpeg",)),
    "png": _kind("image/png", (), ("image/png",)),
    "gif": _kind("image/gif", (), ("image/gif",)),
    "webp": _kind("image/webp", (), ("image/webp",)),
    "svg": _kind("image/svg+xml", (), (), b"<svg"),
    "pdf": _kind("application/pdf", ("application/x-pdf",), ("application/pdf",)),
    "txt": _kind("text/plain"),
    "csv": _kind("text/csv", ("application/csv", "text/x-csv", "text/plain",
                              "application/vnd.ms-excel")),
    "doc": _kind("application/msword", (), ("application/msword", "application/x-ole-storage")),
    "docx": _kind(_DOCX, (), (_DOCX, "application/zip"), b"word/"),
    "xls": _kind("application/vnd.ms-excel", (),
                 ("application/vnd.ms-excel", "application/x-ole-storage")),
    "xlsx": _kind(_XLSX, (), (_XLSX, "application/zip"), b"xl/"),
}
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\]+")


def allowed_types() -> list[str]:
    return sorted({k.mime for k in ALLOWED.values()})


def safe_filename(name: str) -> str:
    base = _UNSAFE_NAME.sub("_", name.replace("\\", "/").rsplit("/", 1)[-1]).strip(" .")
    return base[-200:] or "file"


def _sniff(data: bytes) -> str | None:
    if data.startswith(_OLE2):
        found = filetype.guess_mime(data)
        return found or "application/x-ole-storage"
    return filetype.guess_mime(data[:65536] if not data.startswith(b"PK") else data)


def check_file(filename: str, declared: str, data: bytes) -> NewFile:
    """The file as we store it, or a 415/413 saying exactly what is wrong."""
    name = safe_filename(filename)
    ext = name.rpartition(".")[2].lower() if "." in name else ""
    kind = ALLOWED.get(ext)
    if kind is None:
        raise ApiError(415, f"{name}: files ending .{ext or '(none)'} are not accepted; "
                            f"allowed: {', '.join(sorted(ALLOWED))}")
    if len(data) > MAX_FILE_SIZE:
        raise ApiError(413, f"{name}: larger than {MAX_FILE_SIZE // (1024 * 1024)} MB")
    declared = (declared or _UNNAMED).split(";", 1)[0].strip().lower()
    if declared != _UNNAMED and declared not in kind.declared:
        raise ApiError(415, f"{name}: declared as {declared}, which a .{ext} file is not")
    found = _sniff(data)
    if kind.sniffed:
        if found not in kind.sniffed:
            raise ApiError(415, f"{name}: the content is {found or 'not recognised'}, "
                                f"not {kind.mime}")
    elif found is not None or b"\x00" in data[:65536]:
        raise ApiError(415, f"{name}: the content is {found or 'binary'}, not {kind.mime}")
    if kind.marker is not None and kind.marker not in data[:65536 * 16]:
        raise ApiError(415, f"{name}: the content is not {kind.mime}")
    return NewFile(filename=name, content_type=kind.mime, data=data)
