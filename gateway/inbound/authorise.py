"""Decides whether a threaded reply may speak for the ticket: only its customer or participants.

Anyone can put a ticket number in a subject; a reply from another address is kept as an
internal note for an agent to accept, never posted as the customer's words.
"""

from __future__ import annotations

from gateway.inbound.context import Context
from gateway.inbound.mail import InboundMail


def authorise(mail: InboundMail, ctx: Context) -> None:
    if mail.ticket_id is None or ctx.store is None or mail.sender is None:
        return
    ticket = ctx.store.ticket(mail.ticket_id, s=ctx.s)
    contact = ctx.store.contact(ticket.contact_id, s=ctx.s) if ticket else None
    allowed = {contact.email} if contact else set()
    if ctx.s is not None and ticket is not None:
        allowed |= {p.email for p in ctx.store.participants(ctx.s, ticket.id)}  # type: ignore[arg-type]
    sender = mail.sender.address.lower()
    mail.verified = sender in allowed
    if not mail.verified:
        mail.hold_reason = f"{sender} is not the customer or a participant of {ticket.reference}" \
            if ticket else "ticket not found"
