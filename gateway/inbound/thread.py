"""Finds the ticket a reply belongs to, trying named strategies in order and saying why."""

from __future__ import annotations

import re
from collections.abc import Callable

from gateway.inbound.context import Context
from gateway.inbound.mail import InboundMail, ThreadMatch
from gateway.inbound.route import candidate_addresses
from gateway.tokens import read_reply_tag
from storage.models import Ticket, format_reference

SUBJECT_REFERENCE = re.compile(r"\bTKT-(\d{4,9})\b", re.IGNORECASE)


def by_headers(mail: InboundMail, ctx: Context) -> ThreadMatch | None:
    """Our Message-IDs (or an earlier message of the ticket's) in In-Reply-To / References."""
    p = mail.parsed
    if ctx.store is None or p is None or mail.workspace_id is None:
        return None
    chain = [*p.references, *p.in_reply_to]  # In-Reply-To is the nearest ancestor: tried first
    hit = ctx.store.ticket_for_message_ids(ctx.s, mail.workspace_id, chain)  # type: ignore[arg-type]
    if hit is None:
        return None
    ticket, message_id = hit
    return _match("headers", ticket, f"refers to <{message_id}>")


def by_token(mail: InboundMail, ctx: Context) -> ThreadMatch | None:
    """The signed tag in our reply address, e.g. support+t42-<mac>@domain."""
    for address in candidate_addresses(mail):
        ticket_id = read_reply_tag(ctx.settings.secret_key, address)
        if ticket_id is None or ctx.store is None:
            continue
        ticket = ctx.store.ticket(ticket_id, s=ctx.s)
        if ticket is not None and ticket.workspace_id == mail.workspace_id:
            return _match("token", ticket, f"signed reply address {address}")
    return None


def by_subject(mail: InboundMail, ctx: Context) -> ThreadMatch | None:
    """A reference like [TKT-0042] in the subject, behind any Re:/AW:/Fwd: prefixes."""
    p = mail.parsed
    m = SUBJECT_REFERENCE.search(p.subject) if p is not None else None
    if m is None:
        return None
    number = int(m.group(1))
    if ctx.store is None or mail.workspace_id is None:
        # A dry run without a database can only say what the subject names.
        return ThreadMatch("subject", None, format_reference(number), "reference in subject")
    ticket = ctx.store.ticket_by_number(mail.workspace_id, number, s=ctx.s)
    return _match("subject", ticket, "reference in subject") if ticket else None


STRATEGIES: tuple[Callable[[InboundMail, Context], ThreadMatch | None], ...] = (
    by_headers, by_token, by_subject)


def thread(mail: InboundMail, ctx: Context) -> None:
    for strategy in STRATEGIES:
        match = strategy(mail, ctx)
        if match is not None:
            mail.thread = match
            mail.ticket_id = match.ticket_id
            return


def _match(method, ticket: Ticket, detail: str) -> ThreadMatch:
    return ThreadMatch(method, ticket.id, ticket.reference, detail)
