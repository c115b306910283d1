"""The workspace's portal landing page."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.services import Services
from portal.pages import not_found, page


async def portal_home(request: Request) -> Response:
    services: Services = request.app.state.services
    ws = await asyncio.to_thread(services.store.workspace_by_slug, request.path_params["slug"])
    if ws is None:
        return not_found(request)
    return page(request, "home.html", workspace=ws)


routes = [Route("/portal/{slug}", portal_home, methods=["GET"])]
