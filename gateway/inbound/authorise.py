"""Decides whether a threaded reply may speak for the ticket: only its customer or participants.

Anyone can put a ticket number in a subject, and anyone can write any From header. A reply is
the customer's only when it comes from the ticket's address (or a participant's) and, when
nothing but the subject tied it to the ticket, its envelope sender agrees with that From.
Our Message-IDs and the signed reply address are known only to those we mailed, so they count
as evidence of their own. DKIM is the stronger check: a valid signature by the From domain
vouches for the sender outright, and a failed one, or none from a domain we have seen sign
before, holds the reply. Anything held becomes an internal note for an agent to accept, never
a post as the customer.
"""

from __future__ import annotations

from gateway.inbound.context import Context
from gateway.inbound.dkim_verify import verify
from gateway.inbound.mail import InboundMail


def _domain(address: str) -> str:
    return address.strip().strip("<>").lower().rpartition("@")[2]


def envelope_agrees(mail: InboundMail) -> bool:
    """The envelope sender's domain is the From domain (or a subdomain of it, e.g. bounces.)."""
    if mail.sender is None or "@" not in mail.mail_from:
        return False
    env, head = _domain(mail.mail_from), _domain(mail.sender.address)
    return env == head or env.endswith("." + head)


def check_dkim(mail: InboundMail, ctx: Context) -> None:
    """Verify every signature now, outside the transaction: key lookups may wait on DNS."""
    mail.dkim = verify(mail.raw, ctx.dns_txt)


def note_signers(mail: InboundMail, ctx: Context) -> None:
    """Domains that signed validly are remembered: their unsigned mail is suspect later."""
    if ctx.store is not None and ctx.s is not None and mail.dkim is not None:
        ctx.store.note_signing_domains(ctx.s, mail.dkim.passing_domains())


def dkim_verdict(mail: InboundMail, ctx: Context) -> tuple[bool, str | None]:
    """(vouched, why held): a pass by the From domain vouches; a failure holds."""
    if mail.sender is None or mail.dkim is None:
        return False, None
    domain = _domain(mail.sender.address)
    aligned = mail.dkim.aligned(domain)
    if any(sig.result == "pass" for sig in aligned):
        return True, None
    failed = [sig for sig in aligned if sig.result == "fail"]
    if failed:
        return False, f"DKIM signature for {domain} failed ({failed[0].detail})"
    if ctx.store is not None and ctx.s is not None and ctx.store.signs_mail(ctx.s, domain):
        return False, f"{domain} signs its mail with DKIM, but this message has no valid signature"
    return False, None


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
    agent = (ctx.store.agent_by_email(ctx.s, ticket.workspace_id, sender)
             if ctx.s is not None and sender in ctx.store.team(ctx.s, ticket.workspace_id).emails
             else None)  # the team's addresses are read once a transaction: most senders aren't
    mail.agent_id = agent.id if agent is not None else None  # answering from their mail client
    mail.known_sender = sender in allowed or agent is not None
    vouched, dkim_hold = dkim_verdict(mail, ctx)
    if not mail.known_sender:
        mail.hold_reason = (f"{sender} is not the customer, a participant or an agent of "
                            f"{ticket.reference}")
    elif dkim_hold:
        mail.hold_reason = dkim_hold
    elif mail.thread.method == "subject" and not vouched and not envelope_agrees(mail):
        mail.hold_reason = (f"From says {sender} but the envelope sender is "
                            f"{mail.mail_from or 'empty'}, and only the subject names "
                            f"{ticket.reference}")
    else:
        mail.verified = True
