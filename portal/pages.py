"""Renders portal pages with the workspace's branding and the headers every page carries."""

from __future__ import annotations

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


def not_found(request: Request) -> HTMLResponse:
    return page(request, "not_found.html", workspace=None, status=404)
