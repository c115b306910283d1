"""The tracking page: a ticket shown only to the holder of a valid link, and fresh links on request.

Without a valid token nothing about the ticket is shown, and the page looks the same whether
or not the ticket exists: a reference number guessed or copied is worth nothing.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.services import Services
from gateway.tokens import read_tracking_token
from portal.pages import not_found, page
from storage.models import Ticket, Workspace

LINK_INTERVAL = timedelta(minutes=10)
REFERENCE = re.compile(r"^TKT-(\d{1,9})$", re.IGNORECASE)


def _lookup(services: Services, ws: Workspace, ref: str) -> Ticket | None:
    m = REFERENCE.match(ref)
    return services.store.ticket_by_number(ws.id, int(m.group(1))) if m else None  # type: ignore[arg-type]


def authorised_ticket(services: Services, ws: Workspace, ref: str, token: str) -> Ticket | None:
    """The ticket, if the token was signed for exactly this ticket and its customer's address."""
    claim = read_tracking_token(services.settings.secret_key, token) if token else None
    if claim is None:
        return None
    ticket = _lookup(services, ws, ref)
    if ticket is None or ticket.id != claim[0]:
        return None
    contact = services.store.contact(ticket.contact_id)
    return ticket if contact is not None and contact.email == claim[1] else None


async def _workspace_and_reference(request: Request) -> tuple[Workspace, str] | None:
    """The workspace of the URL and a well-formed reference, or None for a plain 404."""
    services: Services = request.app.state.services
    ws = await asyncio.to_thread(services.store.workspace_by_slug, request.path_params["slug"])
    ref = request.path_params["ref"].upper()
    return (ws, ref) if ws is not None and REFERENCE.match(ref) else None


async def tracking_page(request: Request) -> Response:
    services: Services = request.app.state.services
    found = await _workspace_and_reference(request)
    if found is None:
        return not_found(request)
    ws, ref = found
    token = request.query_params.get("t", "")
    ticket = await asyncio.to_thread(authorised_ticket, services, ws, ref, token)
    if ticket is None:
        return page(request, "link_invalid.html", workspace=ws, status=403, reference=ref,
                    token_in_url=bool(token))
    comments = await asyncio.to_thread(services.store.public_comments, ticket.id)
    contact = await asyncio.to_thread(services.store.contact, ticket.contact_id)
    return page(request, "tracking.html", workspace=ws, ticket=ticket, comments=comments,
                contact=contact, token_in_url=True)


async def request_link(request: Request) -> Response:
    """Emails a fresh link to the address on the ticket; the answer never says if it exists."""
    services: Services = request.app.state.services
    found = await _workspace_and_reference(request)
    if found is None:
        return not_found(request)
    ws, ref = found
    response = page(request, "link_sent.html", workspace=ws, reference=ref)
    # Looked up after the answer is sent: its timing says nothing about the ticket either.
    response.background = BackgroundTask(asyncio.to_thread, _queue_link, services, ws, ref)
    return response


def _queue_link(services: Services, ws: Workspace, ref: str) -> None:
    """At most one fresh link per ticket per LINK_INTERVAL, so the form cannot flood anyone."""
    ticket = _lookup(services, ws, ref)
    if ticket is None:
        return
    with services.store.tx() as s:
        contact = services.store.contact(ticket.contact_id, s=s)
        if contact is None or services.store.sent_recently(
                s, ticket.id, "customer/tracking_link", LINK_INTERVAL):  # type: ignore[arg-type]
            return
        services.mailer.queue(
            s, ws, kind="customer/tracking_link", to_name=contact.name, to_address=contact.email,
            ticket=ticket, context={"customer_name": contact.name, "tracking_url":
                                    services.mailer.tracking_url(ws, ticket, contact.email)})
    services.mailer.wake()


routes = [
    Route("/portal/{slug}/tickets/{ref}", tracking_page, methods=["GET"]),
    Route("/portal/{slug}/tickets/{ref}/link", request_link, methods=["POST"]),
]
