"""The CSAT survey `/portal/{slug}/feedback?t=...`: one rating (1-5 stars) per ticket.

Its token is not a tracking token (gateway/tokens.py keeps them apart) and lasts 7 days. The
database's unique ticket_id decides "once": a second rating, even a concurrent one, finds the
first and is told so. The agent API's ticket detail shows the rating as "csat".
"""

from __future__ import annotations

import asyncio

from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.services import Services
from gateway.tokens import read_feedback_token
from portal.pages import not_found, workspace_of
from portal.ratelimit import limits_of
from portal.submit import csrf_ok, show
from portal.uploads import Refused, read_form
from storage.models import Contact, CSATRating, Ticket, Workspace

MAX_COMMENT = 2000
RATINGS = (1, 2, 3, 4, 5)


def _ticket(services: Services, ws: Workspace, token: str) -> tuple[Ticket, bool] | None:
    """(ticket, already rated) when the token is valid for a ticket of this workspace."""
    claim = read_feedback_token(services.settings.secret_key, token) if token else None
    if claim is None:
        return None
    with services.store.read() as s:
        ticket = s.get(Ticket, claim[0])
        if ticket is None or ticket.workspace_id != ws.id:
            return None
        contact = s.get(Contact, ticket.contact_id)
        if contact is None or contact.email != claim[1]:
            return None
        rated = s.exec(select(CSATRating.id).where(CSATRating.ticket_id == ticket.id)).first()
        return ticket, rated is not None


async def _context(request: Request, token: str):
    services: Services = request.app.state.services
    ws = await workspace_of(request, request.path_params["slug"])
    if ws is None:
        return None, None
    return ws, await asyncio.to_thread(_ticket, services, ws, token)


async def feedback_page(request: Request) -> Response:
    token = request.query_params.get("t", "")
    ws, found = await _context(request, token)
    if ws is None:
        return not_found(request)
    if found is None:
        return show(request, "feedback_invalid.html", ws, status=403, token_in_url=True)
    ticket, rated = found
    if rated:
        return show(request, "feedback_done.html", ws, ticket=ticket, already=True,
                    token_in_url=True)
    return show(request, "feedback.html", ws, ticket=ticket, token=token, values={},
                errors={}, ratings=RATINGS, token_in_url=True)


async def feedback_submit(request: Request) -> Response:
    services: Services = request.app.state.services
    try:
        form = await read_form(request, max_files=0)
    except Refused:
        return Response("The form could not be read.", status_code=400)
    form.close()
    token = form.get("t")
    ws, found = await _context(request, token)
    if ws is None:
        return not_found(request)
    if found is None:
        return show(request, "feedback_invalid.html", ws, status=403)
    ticket, rated = found
    if rated:
        return show(request, "feedback_done.html", ws, ticket=ticket, already=True)
    limits = limits_of(request)
    if not await limits.hit("feedback", limits.client_ip(request)):
        return show(request, "rate_limited.html", ws, status=429,
                    limit=limits.describe("feedback"))
    values = {"rating": form.get("rating"), "comment": form.get("comment").strip()}
    errors: dict[str, str] = {}
    if not csrf_ok(request, form):
        errors["form"] = "This form had expired. Please choose your rating and send it again."
    if values["rating"] not in {str(r) for r in RATINGS}:
        errors["rating"] = "Please choose from 1 to 5 stars."
    if len(values["comment"]) > MAX_COMMENT:
        errors["comment"] = f"Please keep the comment under {MAX_COMMENT:,} characters."
    if errors:
        return show(request, "feedback.html", ws, ticket=ticket, token=token, values=values,
                    errors=errors, ratings=RATINGS, status=400)

    def write() -> bool:
        try:
            with services.store.tx() as s:
                s.add(CSATRating(ticket_id=ticket.id, rating=int(values["rating"]),  # type: ignore[arg-type]
                                 comment=values["comment"] or None))
            return True
        except IntegrityError:
            return False

    saved = await asyncio.to_thread(write)
    return show(request, "feedback_done.html", ws, ticket=ticket, already=not saved,
                rating=int(values["rating"]))


routes = [
    Route("/portal/{slug}/feedback", feedback_page, methods=["GET"]),
    Route("/portal/{slug}/feedback", feedback_submit, methods=["POST"]),
]
