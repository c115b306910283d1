"""Renders portal pages with the workspace's branding and the headers every page carries."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from gateway.outbound.render import Brand, template_dir
from storage.models import Workspace

TEMPLATES = Path(__file__).resolve().parent / "templates"
# "mail/..." names the mail templates' folder, for the helpers pages share with mail
# (`{% from "mail/_file_size.j2" import file_size %}`: one way to write a size everywhere).
_env = Environment(loader=ChoiceLoader([
    FileSystemLoader(TEMPLATES), PrefixLoader({"mail": FileSystemLoader(template_dir())})]),
    autoescape=select_autoescape(default=True))
NEUTRAL = Brand("Support", "#2563eb", None, None)

CSP = ("default-src 'self'; img-src 'self' data: https:; style-src 'self' 'unsafe-inline'; "
       "script-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'")


def page(request: Request, template: str, *, workspace: Workspace | None, status: int = 200,
         token_in_url: bool = False, **context) -> HTMLResponse:
    brand = _brand(request, workspace) if workspace else NEUTRAL
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


def _brand(request: Request, workspace: Workspace) -> Brand:
    """The workspace's branding; without a white-label support email, the address customers
    may write to is its first support address (the one its mail comes from), if it has one."""
    base = str(request.base_url).rstrip("/")  # the demo logo is site-relative
    brand = Brand.of(workspace, base)
    if brand.support_email is None and workspace.id is not None:
        address = _first_address(request, workspace.id)
        if address is not None:
            brand = dataclasses.replace(brand, support_email=address)
    return brand


def _first_addresses(request: Request) -> dict[int, tuple[str | None, float]]:
    state = request.app.state
    kept = getattr(state, "first_addresses", None)
    if kept is None:
        kept = state.first_addresses = {}
    return kept


def _remember_first(request: Request, workspace_id: int, address: str | None) -> None:
    kept = _first_addresses(request)
    if len(kept) > 1000:
        kept.clear()
    kept[workspace_id] = (address, time.monotonic() + WORKSPACE_TTL)


def _first_address(request: Request, workspace_id: int) -> str | None:
    """The workspace's first support address, kept for WORKSPACE_TTL seconds per app like the
    workspace itself, and read with it off the event loop (`workspace_of`); only a page
    whose workspace came another way reads it here."""
    hit = _first_addresses(request).get(workspace_id)
    if hit is not None and hit[1] > time.monotonic():
        return hit[0]
    addresses = request.app.state.services.store.support_addresses(workspace_id=workspace_id)
    _remember_first(request, workspace_id, addresses[0] if addresses else None)
    return addresses[0] if addresses else None


def _lookup(store, slug: str) -> tuple[Workspace | None, str | None]:
    """The workspace and, when it has no white-label support email, its first support
    address (what its pages show instead), in one trip to a thread."""
    ws = store.workspace_by_slug(slug)
    if ws is None or ws.support_email or ws.id is None:
        return ws, None
    addresses = store.support_addresses(workspace_id=ws.id)
    return ws, addresses[0] if addresses else None


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
    ws, first = await asyncio.to_thread(_lookup, request.app.state.services.store, slug)
    if ws is not None:
        if len(kept) > 1000:
            kept.clear()
        kept[slug] = (ws, now + WORKSPACE_TTL)
        if not ws.support_email and ws.id is not None:
            _remember_first(request, ws.id, first)
    return ws


def not_found(request: Request, workspace: Workspace | None = None) -> HTMLResponse:
    """The 404 page: in the branding of a workspace the address names (an unknown article,
    ticket or file of it), else neutral, so an unknown slug is told apart from no other."""
    return page(request, "not_found.html", workspace=workspace, status=404)
