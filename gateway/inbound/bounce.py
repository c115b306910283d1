"""Maps a bounce back to the mail it refuses: by the VERP return path, else by the Message-ID
the report quotes. The outbound message is marked bounced and its ticket's agent told."""

from __future__ import annotations

import re

from gateway.inbound.context import Context
from gateway.inbound.mail import InboundMail, Stop
from gateway.inbound.route import candidate_addresses
from gateway.outbound.verp import read_return_path
from storage.models import OutboundMessage

_QUOTED_ID = re.compile(rb"^Message-ID:\s*<([^<>\s]+)>", re.IGNORECASE | re.MULTILINE)
_DIAGNOSTIC = re.compile(rb"^(?:Diagnostic-Code|Status):\s*(.+(?:\r?\n[ \t].+)*)",
                         re.IGNORECASE | re.MULTILINE)


def bounced_mail(mail: InboundMail, ctx: Context) -> OutboundMessage | None:
    assert ctx.store is not None and ctx.s is not None
    for address in candidate_addresses(mail):
        outbound_id = read_return_path(ctx.settings.secret_key, address)
        if outbound_id is not None:
            found = ctx.store.outbound(ctx.s, outbound_id)
            if found is not None:
                return found
    own = mail.parsed.message_id if mail.parsed else None
    for m in _QUOTED_ID.finditer(mail.raw):
        message_id = m.group(1).decode("ascii", "replace")
        if message_id != own:
            found = ctx.store.outbound_by_message_id(ctx.s, message_id)
            if found is not None:
                return found
    return None


def diagnostic(raw: bytes) -> str:
    """The remote server's reason, from the delivery-status part when there is one."""
    found = [" ".join(m.group(1).decode("utf-8", "replace").split())
             for m in _DIAGNOSTIC.finditer(raw)]
    codes = [f for f in found if not re.fullmatch(r"[245]\.\d+\.\d+", f)] or found
    return (codes[0] if codes else "no reason given")[:300]


def bounce(mail: InboundMail, ctx: Context) -> None:
    if mail.classification != "bounce" or ctx.store is None or ctx.s is None:
        return
    outbound = bounced_mail(mail, ctx)
    if outbound is None:
        return  # not about our mail: the gate records it as an ignored bounce
    reason = diagnostic(mail.raw)
    if ctx.intake is not None:
        ctx.intake.record_bounce(ctx.s, outbound, reason)
    mail.ticket_id = outbound.ticket_id
    raise Stop("ignored", f"bounce: outbound mail #{outbound.id} to {outbound.rcpt_to} "
                          f"({outbound.kind}) marked bounced: {reason}")
