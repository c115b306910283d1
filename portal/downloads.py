"""Every attachment leaves as a download: never active content on our origin (SVG, HTML)."""

from __future__ import annotations

import re
import urllib.parse

from starlette.responses import Response

from storage.models import Attachment

ATTACHMENT_CSP = "default-src 'none'; sandbox; frame-ancestors 'none'"


def download(att: Attachment, data: bytes) -> Response:
    quoted = urllib.parse.quote(att.filename, safe="")
    ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", att.filename) or "file"
    return Response(data, media_type=att.content_type, headers={
        "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; "
                               f"filename*=UTF-8''{quoted}",
        "X-Content-Type-Options": "nosniff", "Content-Security-Policy": ATTACHMENT_CSP,
        "Cache-Control": "private, no-store", "Referrer-Policy": "no-referrer"})
