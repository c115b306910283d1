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
# RFC 3464 §2.3.3: one Action per recipient; these say the mail is still on its way or arrived.
_ACTION = re.compile(rb"^Action:\s*([a-z]+)", re.IGNORECASE | re.MULTILINE)
_NOT_FAILED = frozenset({b"delayed", b"delivered", b"relayed", b"expanded"})


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


def delivery_failed(raw: bytes) -> bool:
    """False for a report whose recipients are all delayed, delivered, relayed or expanded:
    a "still trying" warning or a receipt must not mark our mail bounced. A report with no
    Action field (a plain-text bounce) or an unknown one ("failure") is taken as a failure."""
    actions = {m.group(1).lower() for m in _ACTION.finditer(raw)}
    return not actions or not actions <= _NOT_FAILED


def bounce(mail: InboundMail, ctx: Context) -> None:
    if mail.classification != "bounce" or ctx.store is None or ctx.s is None:
        return
    outbound = bounced_mail(mail, ctx)
    if outbound is None:
        return  # not about our mail: the gate records it as an ignored bounce
    mail.ticket_id = outbound.ticket_id
    if not delivery_failed(mail.raw):
        raise Stop("ignored", f"delivery report for outbound mail #{outbound.id} to "
                              f"{outbound.rcpt_to}: not a failure, nothing marked")
    reason = diagnostic(mail.raw)
    if ctx.intake is not None:
        ctx.intake.record_bounce(ctx.s, outbound, reason)
    raise Stop("ignored", f"bounce: outbound mail #{outbound.id} to {outbound.rcpt_to} "
                          f"({outbound.kind}) marked bounced: {reason}")
