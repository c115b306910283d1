"""Finds the workspace a message is for: envelope recipient, then delivery headers, then To/Cc."""

from __future__ import annotations

from email.utils import getaddresses

from gateway.inbound.context import Context
from gateway.inbound.mail import Address, InboundMail, Stop

# Headers an MTA or a forwarding inbox adds with the address the mail was delivered to.
DELIVERY_HEADERS = ("Delivered-To", "X-Original-To", "Resent-To")


def candidate_addresses(mail: InboundMail) -> list[str]:
    p = mail.parsed
    found = list(mail.rcpt_tos)
    if p is not None:
        for name in DELIVERY_HEADERS:
            found += [a for _, a in getaddresses([str(v) for v in p.headers.get_all(name, [])])]
        found += [a.address for a in [*p.to, *p.cc]]
    return [a.strip().lower() for a in found if "@" in a]


def route(mail: InboundMail, ctx: Context) -> None:
    if ctx.store is None:
        return
    store = ctx.store
    for address in candidate_addresses(mail):
        found = ctx.once(("route", address), lambda a=address: _workspace_of(store, ctx, a))
        if found is not None:
            mail.workspace_id, mail.workspace_slug = found
            break
    p = mail.parsed
    mail.sender = p.from_ if p is not None and p.from_ else None
    if mail.sender is None and "@" in mail.mail_from:
        mail.sender = Address("", mail.mail_from.strip().lower())  # no From: the envelope's


def _workspace_of(store, ctx: Context, address: str) -> tuple[int, str] | None:
    ws = store.workspace_for_address(address, s=ctx.s)
    return (ws.id, ws.slug) if ws is not None else None


def require_workspace(mail: InboundMail, ctx: Context) -> None:
    if mail.workspace_id is None:
        raise Stop("ignored", "not addressed to any support address: "
                   + (", ".join(mail.rcpt_tos) or "no recipients"))
    if mail.sender is None:
        raise Stop("failed", "no sender address: no readable From header and an empty envelope")
