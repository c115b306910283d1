"""Customer uploads: streamed with a per-file cap, checked by content, optionally virus-scanned.

The multipart body is parsed as it arrives (python-multipart): no file part is ever held past
10 MB, and a file over the cap is drained and reported instead of buffered, so the rest of the
form survives for the error page. Files go to temporary files that spill to disk past 1 MB.
The type rules are api_files.check_file (extension, declared type and sniffed content must all
agree with the allowlist); this module adds plain refusals for executables and HTML, the
scanning hook (ClamAV's clamd over its socket when WORKESTRA_CLAMD_SOCKET is set) and the
signed upload tokens that `POST /api/public/upload` hands out and the forms accept.
"""

from __future__ import annotations

import asyncio
import os
import re
import struct
import tempfile
import urllib.parse
from dataclasses import dataclass, field

import filetype
from itsdangerous import BadSignature, URLSafeTimedSerializer
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.intake import NewFile
from gateway.services import Services
from portal.api_auth import ApiError
from portal.api_files import MAX_FILE_SIZE, check_file, safe_filename
from portal.downloads import download
from portal.pages import workspace_of
from portal.ratelimit import limits_of
from storage.models import Attachment

MAX_FIELD = 64 * 1024
UPLOAD_MAX_AGE = 24 * 3600
_UPLOAD_SALT = "workestra.upload.v1"
_EXECUTABLE_EXT = {"exe", "dll", "com", "bat", "cmd", "msi", "scr", "sh", "ps1", "vbs", "js",
                   "jar", "apk", "app", "bin", "elf", "deb", "rpm", "dmg", "pif", "cpl", "lnk"}
_HTML_EXT = {"html", "htm", "xhtml", "shtml", "mht", "mhtml", "hta", "php", "xml"}
_EXEC_MAGIC = (b"MZ", b"\x7fELF", b"\xca\xfe\xba\xbe", b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe",
               b"#!")
_HTML_START = re.compile(rb"^\s*(<!doctype html|<html|<head|<body|<script|<iframe)", re.I)


class Refused(Exception):
    """A file (or a whole body) we will not take, with the sentence to show the customer."""

    def __init__(self, message: str, status: int = 415) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class FilePart:
    filename: str
    content_type: str
    size: int = 0
    too_large: bool = False
    spool: tempfile.SpooledTemporaryFile = field(
        default_factory=lambda: tempfile.SpooledTemporaryFile(max_size=1024 * 1024))

    def read(self) -> bytes:
        self.spool.seek(0)
        return self.spool.read()


@dataclass
class Form:
    fields: dict[str, list[str]] = field(default_factory=dict)
    files: list[FilePart] = field(default_factory=list)

    def get(self, name: str, default: str = "") -> str:
        values = self.fields.get(name)
        return values[0] if values else default

    def getlist(self, name: str) -> list[str]:
        return self.fields.get(name, [])

    def close(self) -> None:
        for f in self.files:
            f.spool.close()


class _Collector:
    """python-multipart callbacks that build a Form while the body streams in."""

    def __init__(self, form: Form, max_files: int, max_file_size: int,
                 drain_oversized: bool) -> None:
        self.form, self.max_files, self.max_file_size = form, max_files, max_file_size
        self.drain_oversized = drain_oversized
        self.headers: dict[bytes, bytes] = {}
        self.header_field = b""
        self.header_value = b""
        self.name = ""
        self.file: FilePart | None = None
        self.value = bytearray()
        self.ignore = False

    def callbacks(self) -> dict:
        return {"on_part_begin": self.part_begin, "on_part_data": self.part_data,
                "on_part_end": self.part_end, "on_header_field": self.header_field_data,
                "on_header_value": self.header_value_data, "on_header_end": self.header_end,
                "on_headers_finished": self.headers_finished}

    def part_begin(self) -> None:
        self.headers, self.file, self.value, self.ignore = {}, None, bytearray(), False

    def header_field_data(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def header_value_data(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def header_end(self) -> None:
        self.headers[self.header_field.lower()] = self.header_value
        self.header_field, self.header_value = b"", b""

    def headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        self.name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if filename is None:
            return
        name = filename.decode("utf-8", "replace")
        if not name:  # an empty file input: nothing chosen
            self.ignore = True
            return
        if len(self.form.files) >= self.max_files:
            raise Refused(f"At most {self.max_files} files can be attached.", 413)
        declared = self.headers.get(b"content-type", b"").decode("latin-1")
        self.file = FilePart(safe_filename(name), declared)
        self.form.files.append(self.file)

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self.ignore:
            return
        chunk = data[start:end]
        if self.file is None:
            self.value += chunk
            if len(self.value) > MAX_FIELD:
                raise Refused(f"The field {self.name} is too long.", 413)
            return
        self.file.size += len(chunk)
        if self.file.size > self.max_file_size:
            if not self.drain_oversized:  # nothing else to keep: stop reading it at once
                raise Refused(f"{self.file.filename}: larger than "
                              f"{self.max_file_size // (1024 * 1024)} MB.", 413)
            self.file.too_large = True  # drained, not kept: the rest of the form still counts
            self.file.spool.truncate(0)
            return
        self.file.spool.write(chunk)

    def part_end(self) -> None:
        if self.file is None and not self.ignore and self.name:
            self.form.fields.setdefault(self.name, []).append(self.value.decode("utf-8", "replace"))


async def read_form(request: Request, *, max_files: int, max_file_size: int = MAX_FILE_SIZE,
                    drain_oversized: bool = True) -> Form:
    """The request's form, multipart or urlencoded, read under the limits above. The body as a
    whole may not exceed room for every file plus one oversized one being drained.

    A page's form drains an oversized file so its other fields come back with the error;
    with `drain_oversized=False` (a lone upload) the request is refused the moment a file
    passes the limit, however the body is framed."""
    ctype, options = parse_options_header(request.headers.get("content-type", ""))
    budget = (max_files + 1) * max_file_size + 4 * MAX_FIELD
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > budget:
        raise Refused("The request is too large.", 413)
    form = Form()
    total = 0
    if ctype == b"multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            raise Refused("The form could not be read.", 400)
        collector = _Collector(form, max_files, max_file_size, drain_oversized)
        parser = MultipartParser(boundary, collector.callbacks())
        try:
            async for chunk in request.stream():
                total += len(chunk)
                if total > budget:
                    raise Refused("The request is too large.", 413)
                parser.write(chunk)
            parser.finalize()
            if parser.state != MultipartState.END:  # cut short: never a ticket from half a form
                raise Refused("The form could not be read.", 400)
        except Refused:
            form.close()
            raise
        except Exception as e:  # malformed multipart from python-multipart
            form.close()
            raise Refused("The form could not be read.", 400) from e
        return form
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > 4 * MAX_FIELD:
            raise Refused("The request is too large.", 413)
    for key, value in urllib.parse.parse_qsl(body.decode("utf-8", "replace"),
                                             keep_blank_values=True):
        form.fields.setdefault(key, []).append(value)
    return form


# -- what a file may be ----------------------------------------------------------------------

def check_upload(part_name: str, declared: str, data: bytes) -> NewFile:
    """The file as stored, or Refused with a sentence naming the file and the reason."""
    name = safe_filename(part_name)
    ext = name.rpartition(".")[2].lower() if "." in name else ""
    found = filetype.guess_mime(data[:8192]) or ""
    if (ext in _EXECUTABLE_EXT or data.startswith(_EXEC_MAGIC) or "executable" in found
            or "msdownload" in found or "mach-binary" in found):
        raise Refused(f"{name}: programs and scripts cannot be attached.")
    if ext in _HTML_EXT or "html" in declared.lower() or _HTML_START.match(data[:1024]):
        raise Refused(f"{name}: web pages (HTML) cannot be attached; "
                      "send a PDF or a screenshot instead.")
    try:
        return check_file(name, declared, data)
    except ApiError as e:
        raise Refused(e.message, e.status) from None


async def scan(data: bytes, slug: str, env: dict[str, str] | None = None) -> None:
    """The scanning hook: off unless WORKESTRA_CLAMD_SOCKET names clamd's socket (a path, or
    host:port) and WORKESTRA_SCAN_WORKSPACES ("*" by default) includes the workspace. Anything
    but a clean verdict refuses the file."""
    env = dict(os.environ) if env is None else env
    target = env.get("WORKESTRA_CLAMD_SOCKET", "").strip()
    scope = {s.strip() for s in env.get("WORKESTRA_SCAN_WORKSPACES", "*").split(",")}
    if not target or not ("*" in scope or slug in scope):
        return
    try:
        verdict = await asyncio.wait_for(_clamd_instream(target, data), 60)
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as e:
        raise Refused("The file could not be checked for viruses just now; "
                      "please try again in a few minutes.", 503) from e
    if not verdict.endswith("OK"):
        raise Refused("The file looks harmful and was not accepted." if "FOUND" in verdict
                      else "The file could not be checked for viruses.", 415)


async def _clamd_instream(target: str, data: bytes) -> str:
    """clamd's INSTREAM command: 4-byte big-endian length chunks, ended by a zero length."""
    if target.startswith("/"):
        reader, writer = await asyncio.open_unix_connection(target)
    else:
        host, _, port = target.rpartition(":")
        reader, writer = await asyncio.open_connection(host or "127.0.0.1", int(port))
    try:
        writer.write(b"zINSTREAM\0")
        for i in range(0, len(data), 65536):
            chunk = data[i:i + 65536]
            writer.write(struct.pack(">I", len(chunk)) + chunk)
            await writer.drain()
        writer.write(struct.pack(">I", 0))
        await writer.drain()
        reply = await reader.readuntil(b"\0")
        return reply.rstrip(b"\0").decode("utf-8", "replace").strip()
    finally:
        writer.close()


@dataclass
class Accepted:
    """The form's files after their checks: what to attach if the form is sent, and what to
    keep for the customer if it comes back with an error."""

    files: list[NewFile] = field(default_factory=list)  # every file that passed
    tokens: list[str] = field(default_factory=list)  # of those already kept (sent ahead)
    fresh: list[NewFile] = field(default_factory=list)  # chosen in this form, not kept yet
    errors: list[str] = field(default_factory=list)


async def accept_parts(services: Services, slug: str, parts: list[FilePart],
                       tokens: list[str]) -> Accepted:
    """The files of a form: those kept earlier (upload tokens) and those chosen now, each
    checked. Nothing new is stored here: a form that is sent stores its files with the
    ticket, and one that comes back stores them through `keep_for_retry`."""
    got = Accepted()
    for token in tokens:
        found = await asyncio.to_thread(resolve_upload, services, slug, token)
        if found is not None:
            got.files.append(found)
            got.tokens.append(token)
    for part in parts:
        if part.too_large:
            got.errors.append(f"{part.filename}: larger than {MAX_FILE_SIZE // (1024 * 1024)} MB.")
            continue
        try:
            data = part.read()
            new = check_upload(part.filename, part.content_type, data)
            await scan(data, slug)
        except Refused as e:
            got.errors.append(e.message)
            continue
        got.files.append(new)
        got.fresh.append(new)
    return got


async def keep_for_retry(request: Request, services: Services, slug: str,
                         got: Accepted) -> list[str]:
    """Upload tokens for every file that passed, so the form that comes back with an error
    still has them. Each file kept counts as one upload against the address's upload limit
    (the one `POST /api/public/upload` has): a form sent wrong on purpose, again and again,
    would otherwise fill the disk. A file over the limit is not kept, and `got.errors` says
    to attach it again."""
    limits = limits_of(request)
    ip = limits.client_ip(request)
    kept = list(got.tokens)
    for f in got.fresh:
        if not await limits.hit("upload", ip):
            got.errors.append(f"{f.filename} could not be kept for you (too many files sent "
                              "from your network just now): please attach it again.")
            continue
        kept.append(await asyncio.to_thread(remember_upload, services, slug, f))
    return kept


# -- upload tokens -------------------------------------------------------------------------

def remember_upload(services: Services, slug: str, f: NewFile) -> str:
    """Stores the bytes and signs what they are, for a later form to attach."""
    digest = services.blobs.put(f.data)
    signer = URLSafeTimedSerializer(services.settings.secret_key, salt=_UPLOAD_SALT)
    return signer.dumps([slug, digest, f.filename, f.content_type])


def upload_label(services: Services, token: str) -> str | None:
    try:
        value = URLSafeTimedSerializer(services.settings.secret_key, salt=_UPLOAD_SALT).loads(
            token, max_age=UPLOAD_MAX_AGE)
    except (BadSignature, ValueError, TypeError):
        return None
    return str(value[2]) if isinstance(value, list) and len(value) == 4 else None


def resolve_upload(services: Services, slug: str, token: str) -> NewFile | None:
    try:
        value = URLSafeTimedSerializer(services.settings.secret_key, salt=_UPLOAD_SALT).loads(
            token, max_age=UPLOAD_MAX_AGE)
    except (BadSignature, ValueError, TypeError):
        return None
    if not (isinstance(value, list) and len(value) == 4 and value[0] == slug):
        return None
    try:
        data = services.blobs.get(value[1])
    except OSError:
        return None
    return NewFile(filename=value[2], content_type=value[3], data=data)


async def upload(request: Request) -> Response:
    """POST /api/public/upload (multipart: slug, file): one checked file, a token for a form."""
    services: Services = request.app.state.services
    limits = limits_of(request)
    if not await limits.hit("upload", limits.client_ip(request)):
        return JSONResponse({"error": f"Too many uploads: at most {limits.describe('upload')}."},
                            status_code=429, headers={"Retry-After": "600"})
    try:
        form = await read_form(request, max_files=1, drain_oversized=False)
    except Refused as e:
        return JSONResponse({"error": e.message}, status_code=e.status)
    try:
        slug = form.get("slug") or request.query_params.get("slug", "")
        ws = await workspace_of(request, slug)
        if ws is None:
            return JSONResponse({"error": "no such workspace"}, status_code=404)
        if not form.files:
            return JSONResponse({"error": "no file in the field 'file'"}, status_code=400)
        part = form.files[0]
        if part.too_large:
            return JSONResponse({"error": f"{part.filename}: larger than "
                                 f"{MAX_FILE_SIZE // (1024 * 1024)} MB."}, status_code=413)
        data = part.read()
        try:
            new = check_upload(part.filename, part.content_type, data)
            await scan(data, slug)
        except Refused as e:
            return JSONResponse({"error": e.message}, status_code=e.status)
        token = await asyncio.to_thread(remember_upload, services, slug, new)
        return JSONResponse({"upload": token, "filename": new.filename, "size": len(new.data),
                             "content_type": new.content_type}, status_code=201)
    finally:
        form.close()


# -- serving attachments -------------------------------------------------------------------

def attachment_response(services: Services, att: Attachment) -> Response:
    """Always a download, never active content on our origin (SVG and HTML included)."""
    return download(att, services.blobs.get(att.sha256))


routes = [Route("/api/public/upload", upload, methods=["POST"])]
