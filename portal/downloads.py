"""Every attachment leaves as a download: never active content on our origin (SVG, HTML)."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable

from sqlmodel import Session
from starlette.responses import Response

from storage.blobs import BlobStore
from storage.models import Attachment, Ticket
from storage.store import Store

ATTACHMENT_CSP = "default-src 'none'; sandbox; frame-ancestors 'none'"


def download(att: Attachment, data: bytes) -> Response:
    quoted = urllib.parse.quote(att.filename, safe="")
    ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", att.filename) or "file"
    return Response(data, media_type=att.content_type, headers={
        "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; "
                               f"filename*=UTF-8''{quoted}",
        "X-Content-Type-Options": "nosniff", "Content-Security-Policy": ATTACHMENT_CSP,
        "Cache-Control": "private, no-store", "Referrer-Policy": "no-referrer"})


def ticket_file(store: Store, blobs: BlobStore, find_ticket: Callable[[Session], Ticket],
                attachment_id: int) -> tuple[Attachment, bytes] | None:
    """The attachment and its bytes, if it belongs to the ticket `find_ticket` allows; the
    finder raises for a ticket the caller may not see. OSError when the bytes are gone."""
    with store.read() as s:
        ticket = find_ticket(s)
        att = s.get(Attachment, attachment_id)
        if att is None or att.ticket_id != ticket.id:
            return None
    return att, blobs.get(att.sha256)
