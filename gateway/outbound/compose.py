"""Builds an outgoing message: headers that thread, a reply address that routes back, no loops."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.utils import format_datetime

from gateway.outbound.render import Rendered
from storage.models import utcnow

LOOP_HEADER = "X-Loop"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def clean_header(value: str) -> str:
    """No CR, LF or other control characters: a name or subject cannot inject headers."""
    return " ".join(_CONTROL.sub(" ", value).split())


def new_message_id(domain: str) -> str:
    """A Message-ID (without brackets) under our domain; recorded so threading finds it again."""
    return f"{uuid.uuid4().hex}@{domain}"


def _address(name: str, address: str) -> HeaderAddress:
    local, _, domain = address.rpartition("@")
    return HeaderAddress(display_name=clean_header(name), username=local, domain=domain)


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
) -> EmailMessage:
    """A multipart/alternative message, text first (RFC 2046: the preferred part comes last)."""
    msg = EmailMessage()
    msg["From"] = _address(from_name, from_address)
    msg["To"] = _address(to_name, to_address)
    msg["Subject"] = clean_header(rendered.subject)
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = f"<{message_id}>"
    if reply_to:
        msg["Reply-To"] = _address(from_name, reply_to)
    if in_reply_to:
        msg["In-Reply-To"] = f"<{in_reply_to}>"
    refs = [r for r in (references or []) if r][-20:]
    if refs:
        msg["References"] = " ".join(f"<{r}>" for r in refs)
    if automatic:
        msg["Auto-Submitted"] = "auto-replied"  # RFC 3834 section 5
    msg[LOOP_HEADER] = loop_marker  # the inbound side recognises its own mail by it
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    for filename, content_type, data in attachments:  # the message becomes multipart/mixed
        maintype, _, subtype = content_type.partition("/")
        msg.add_attachment(data, maintype=maintype or "application",
                           subtype=subtype or "octet-stream",
                           filename=clean_header(filename) or "file")
    return msg
