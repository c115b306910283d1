"""`GET /api/public/tickets?t=TOKEN`: the tracking page's data as JSON, for the holder of a link.

`GET /api/public/openapi.json` describes this and the other public endpoints (portal/api_openapi).

The token alone decides (no workspace in the URL: the token names the ticket). The answer may
be cached by the customer's own browser for a few seconds, never by a shared cache.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.services import Services
from gateway.tokens import read_tracking_token
from portal.api_auth import iso
from portal.api_openapi import public_openapi
from portal.tracking import View, load_view

CACHE = "private, max-age=10, stale-while-revalidate=60"


def view_json(view: View) -> dict:
    t = view.ticket
    return {
        "reference": t.reference, "subject": t.subject, "status": t.status,
        "status_label": t.status_label, "type": t.type, "created_at": iso(t.created_at),
        "updated_at": iso(t.updated_at),
        "resolution": t.resolution if t.status in ("resolved", "closed") else None,
        "resolved_at": iso(t.resolved_at),
        "messages": [{"author": m.author, "kind": m.kind, "body": m.body,
                      "created_at": iso(m.created_at),
                      "attachments": [{"filename": a.filename, "content_type": a.content_type,
                                       "size": a.size} for a in m.attachments]}
                     for m in view.messages],
    }


def _authorised(services: Services, token: str) -> View | None:
    claim = read_tracking_token(services.settings.secret_key, token) if token else None
    if claim is None:
        return None
    view = load_view(services, claim[0])
    if view is None or view.contact is None or view.contact.email != claim[1]:
        return None
    return view


async def ticket(request: Request) -> Response:
    services: Services = request.app.state.services
    token = request.query_params.get("t", "")
    view = await asyncio.to_thread(_authorised, services, token)
    headers = {"Referrer-Policy": "no-referrer"}
    if view is None:
        return JSONResponse({"error": "the link is not valid or has expired"}, status_code=404,
                            headers={**headers, "Cache-Control": "no-store"})
    return JSONResponse(view_json(view), headers={**headers, "Cache-Control": CACHE,
                                                  "Vary": "Cookie"})


async def openapi_json(request: Request) -> Response:
    return JSONResponse(public_openapi())


routes = [Route("/api/public/tickets", ticket, methods=["GET"]),
          Route("/api/public/openapi.json", openapi_json, methods=["GET"])]
