"""Decides whether a threaded reply may speak for the ticket: only its customer or participants.

Anyone can put a ticket number in a subject, and anyone can write any From header. A reply is
the customer's only when it comes from the ticket's address (or a participant's) and, when
nothing but the subject tied it to the ticket, its envelope sender agrees with that From.
Our Message-IDs and the signed reply address are known only to those we mailed, so they count
as evidence of their own. Anything else is held for an agent, never posted as the customer.
DKIM (dkimpy) is the stronger check that comes with the inbound hardening work.
"""

from __future__ import annotations

from gateway.inbound.context import Context
from gateway.inbound.mail import InboundMail


def _domain(address: str) -> str:
    return address.strip().strip("<>").lower().rpartition("@")[2]


def envelope_agrees(mail: InboundMail) -> bool:
    """The envelope sender's domain is the From domain (or a subdomain of it, e.g. bounces.)."""
    if mail.sender is None or "@" not in mail.mail_from:
        return False
    env, head = _domain(mail.mail_from), _domain(mail.sender.address)
    return env == head or env.endswith("." + head)


def authorise(mail: InboundMail, ctx: Context) -> None:
    if mail.ticket_id is None or ctx.store is None or mail.sender is None:
        return
    ticket = ctx.store.ticket(mail.ticket_id, s=ctx.s)
    if ticket is None:
        return
    contact = ctx.store.contact(ticket.contact_id, s=ctx.s)
    allowed = {contact.email} if contact else set()
    if ctx.s is not None:
        allowed |= {p.email for p in ctx.store.participants(ctx.s, ticket.id)}  # type: ignore[arg-type]
    sender = mail.sender.address.lower()
    mail.known_sender = sender in allowed
    if not mail.known_sender:
        mail.hold_reason = f"{sender} is not the customer or a participant of {ticket.reference}"
    elif mail.thread.method == "subject" and not envelope_agrees(mail):
        mail.hold_reason = (f"From says {sender} but the envelope sender is "
                            f"{mail.mail_from or 'empty'}, and only the subject names "
                            f"{ticket.reference}")
    else:
        mail.verified = True
