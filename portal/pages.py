"""Renders portal pages with the workspace's branding and the headers every page carries."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from gateway.outbound.render import Brand
from storage.models import Workspace

TEMPLATES = Path(__file__).resolve().parent / "templates"
_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True))

CSP = ("default-src 'self'; img-src 'self' data: https:; style-src 'self' 'unsafe-inline'; "
       "script-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'")


def page(request: Request, template: str, *, workspace: Workspace | None, status: int = 200,
         token_in_url: bool = False, **context) -> HTMLResponse:
    base = str(request.base_url).rstrip("/")  # the demo logo is site-relative
    brand = Brand.of(workspace, base) if workspace else Brand("Support", "#2563eb", None, None)
    html = _env.get_template(template).render(request=request, brand=brand,
                                               workspace=workspace, **context)
    response = HTMLResponse(html, status_code=status)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    # A token in the address must never leak to another site through the Referer header.
    response.headers["Referrer-Policy"] = "no-referrer" if token_in_url else "same-origin"
    if token_in_url:
        response.headers["Cache-Control"] = "no-store"
    return response


def site_of(request: Request) -> tuple:
    """What `request.base_url` depends on (scheme, host, root path), without building it: a
    kept page's key, looked up on every view."""
    scope = request.scope
    server = scope.get("server")
    return (scope["scheme"], request.headers.get("host"), tuple(server) if server else None,
            scope.get("app_root_path", scope.get("root_path", "")))


WORKSPACE_TTL = 2.0  # seconds a portal process keeps a workspace it looked up


async def workspace_of(request: Request, slug: str) -> Workspace | None:
    """The workspace a portal address names. Kept for WORKSPACE_TTL seconds per app, so a busy
    portal reads it once, not on every request (a submission spent an eighth of its time on
    that read); a changed logo or colour shows within two seconds. Unknown slugs are always
    looked up, so a new workspace works at once. The object is shared: read it, never add it
    to a session."""
    kept: dict[str, tuple[Workspace, float]] = request.app.state.workspaces
    now = time.monotonic()
    hit = kept.get(slug)
    if hit is not None and hit[1] > now:
        return hit[0]
    ws = await asyncio.to_thread(request.app.state.services.store.workspace_by_slug, slug)
    if ws is not None:
        if len(kept) > 1000:
            kept.clear()
        kept[slug] = (ws, now + WORKSPACE_TTL)
    return ws


def not_found(request: Request) -> HTMLResponse:
    return page(request, "not_found.html", workspace=None, status=404)
