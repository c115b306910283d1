"""The portal's application: the top-level route table and nothing else."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from gateway.services import Services
from portal import (
    api_agent,
    feedback,
    health,
    home,
    kb_search,
    public_api,
    submit,
    tracking,
    uploads,
)
from portal.console import routes as console_routes
from portal.page_cache import PageCache
from portal.pages import not_found
from portal.request_log import RequestLog

STATIC = Path(__file__).resolve().parent / "static"


async def _not_found(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": "no such path"}, status_code=404)
    return not_found(request)


async def _http_error(request: Request, exc: Exception) -> Response:
    """API clients get JSON errors (405 and the like); pages keep Starlette's plain text."""
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code,
                            headers=exc.headers)
    return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)


def create_app(services: Services) -> Starlette:
    app = Starlette(
        routes=[  # tried in order: the pages customers load most come first
            *tracking.routes,
            *submit.routes,
            *health.routes,
            *home.routes,
            *feedback.routes,
            *public_api.routes,
            *uploads.routes,
            *kb_search.routes,
            *api_agent.routes,
            *console_routes,
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        exception_handlers={404: _not_found, HTTPException: _http_error},
    )
    app.state.services = services
    app.state.page_cache = PageCache()
    app.state.workspaces = {}  # slug -> (workspace, until): see pages.workspace_of
    app.state.metrics = health.Metrics(services.store)
    # Outermost: its request id is on every line below it, and it times the whole request.
    app.add_middleware(RequestLog, metrics=app.state.metrics)
    return app
