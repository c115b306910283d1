"""The portal's application: the top-level route table and nothing else."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.services import Services
from portal import home, tracking
from portal.pages import not_found

STATIC = Path(__file__).resolve().parent / "static"


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def _not_found(request: Request, exc: Exception) -> Response:
    return not_found(request)


def create_app(services: Services) -> Starlette:
    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            *home.routes,
            *tracking.routes,
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        exception_handlers={404: _not_found},
    )
    app.state.services = services
    return app
