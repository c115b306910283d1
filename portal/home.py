"""The workspace's portal landing page, and the floating-widget script for other sites."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from portal.pages import not_found, workspace_of
from portal.submit import show

WIDGET = Path(__file__).resolve().parent / "static" / "widget.js"


async def portal_home(request: Request) -> Response:
    ws = await workspace_of(request, request.path_params["slug"])
    if ws is None:
        return not_found(request)
    return show(request, "home.html", ws)


async def widget(request: Request) -> Response:
    """`<script src=".../portal/SLUG/widget.js" async></script>`: the script finds its
    workspace from its own address, so this is the same file as /static/widget.js."""
    ws = await workspace_of(request, request.path_params["slug"])
    if ws is None:
        return not_found(request)
    return Response(WIDGET.read_bytes(), media_type="text/javascript", headers={
        "Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff",
        "Access-Control-Allow-Origin": "*", "Cross-Origin-Resource-Policy": "cross-origin"})


routes = [
    Route("/portal/{slug}", portal_home, methods=["GET"]),
    Route("/portal/{slug}/widget.js", widget, methods=["GET"]),
]
