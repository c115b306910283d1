"""The last step: hands the message to the intake as a new ticket, a reply, or a held note."""

from __future__ import annotations

from gateway.agent_actions import AgentActions
from gateway.inbound.context import Context
from gateway.inbound.mail import Address, InboundMail, Stop
from gateway.intake import NewFile, Person, TicketRequest
from storage.models import Agent, Ticket
from storage.store import held, normalise_address


def _files(mail: InboundMail) -> list[NewFile]:
    parts = mail.parsed.attachments if mail.parsed else []
    return [NewFile(a.filename, a.content_type, a.data, a.inline, a.content_id) for a in parts]


def _html(mail: InboundMail) -> str | None:
    """The mail's HTML for agents, only ever as nh3 sanitised it at parse time."""
    return mail.parsed.html_safe if mail.parsed else None


def deliver(mail: InboundMail, ctx: Context) -> None:
    if ctx.intake is None or ctx.s is None:
        return  # a dry run stores nothing
    ticket = held(ctx.s, Ticket, mail.ticket_id) if mail.ticket_id else None
    if ticket is not None and mail.thread.method == "subject" and not mail.known_sender:
        # A stranger naming someone else's ticket is a new request of their own, not a reply.
        _new_ticket(mail, ctx, linked=None)
    elif ticket is not None and ticket.status != "closed":
        _reply(mail, ctx, ticket)
    else:
        _new_ticket(mail, ctx, linked=ticket)


def _reply(mail: InboundMail, ctx: Context, ticket: Ticket) -> None:
    assert ctx.intake is not None and ctx.s is not None and mail.sender is not None
    files = _files(mail)
    if not mail.reply_text.strip() and not files:
        raise Stop("ignored", f"empty reply to {ticket.reference}: nothing but quoted text")
    author = Person(mail.sender.name, mail.sender.address)
    if mail.verified and mail.agent_id is not None:
        _agent_reply(mail, ctx, ticket, files)
        return
    if mail.verified:
        ctx.intake.add_customer_reply(ctx.s, ticket, author, mail.reply_text, files=files,
                                      body_html=_html(mail), inbound_message_id=mail.inbound_id)
        mail.reason = f"reply on {ticket.reference} ({mail.thread.method})"
    else:
        ctx.intake.hold_reply(ctx.s, ticket, author, mail.reply_text,
                              mail.hold_reason or "unverified sender", files=files,
                              body_html=_html(mail), inbound_message_id=mail.inbound_id)
        mail.reason = f"held as internal note on {ticket.reference}: {mail.hold_reason}"
    mail.outcome = "comment"


INTERNAL_MARK = "#internal"


def _agent_reply(mail: InboundMail, ctx: Context, ticket: Ticket, files: list[NewFile]) -> None:
    """An agent answering from their own mail client: a public reply, or a note if the first
    line says #internal."""
    assert ctx.intake is not None and ctx.s is not None
    agent = held(ctx.s, Agent, mail.agent_id)
    lines = mail.reply_text.strip().splitlines()
    internal = bool(lines) and lines[0].strip().lower() == INTERNAL_MARK
    body = "\n".join(lines[1:] if internal else lines).strip()
    if not body and not files:
        raise Stop("ignored", f"empty {INTERNAL_MARK} reply to {ticket.reference}")
    actions = AgentActions(ctx.intake.store, ctx.intake.blobs, ctx.intake.mailer)
    actions.reply(ctx.s, ticket, agent, body, files=files, internal=internal)  # type: ignore[arg-type]
    mail.outcome = "comment"
    mail.reason = (f"{'internal note' if internal else 'agent reply'} by {agent.email} "  # type: ignore[union-attr]
                   f"on {ticket.reference} ({mail.thread.method})")


def _participants(mail: InboundMail, ctx: Context, customer: str) -> list[Address]:
    """Everyone else the customer wrote to (To and Cc), but never our own addresses or agents."""
    assert ctx.store is not None and ctx.s is not None and mail.parsed is not None
    ws = mail.workspace_id
    ours = {normalise_address(a) for a in ctx.support_addresses(ws)}
    ours |= ctx.agent_emails(ws)  # type: ignore[arg-type]
    ours.add(customer)
    found: dict[str, Address] = {}
    for a in [*mail.parsed.to, *mail.parsed.cc]:
        if normalise_address(a.address) not in ours and a.address not in ours:
            found.setdefault(a.address, a)
    return list(found.values())


def _new_ticket(mail: InboundMail, ctx: Context, linked: Ticket | None) -> None:
    assert ctx.intake is not None and ctx.s is not None and mail.sender is not None
    p = mail.parsed
    assert p is not None and mail.workspace_id is not None
    customer = mail.original_sender or mail.sender
    cc = _participants(mail, ctx, customer.address)
    chain = [*p.references, *([p.message_id] if p.message_id else [])]
    body = mail.reply_text if linked is not None else p.text
    ticket = ctx.intake.open_ticket(ctx.s, TicketRequest(
        workspace_id=mail.workspace_id, customer=Person(customer.name, customer.address),
        subject=p.subject, description=body.strip(), channel="email", files=_files(mail),
        participants=[Person(a.name, a.address) for a in cc], message_chain=chain,
        linked_ticket_id=linked.id if linked else None))
    mail.ticket_id = ticket.id
    mail.outcome = "new_ticket"
    mail.reason = f"opened {ticket.reference}" + (
        f" (follow-up of closed {linked.reference})" if linked else "")
