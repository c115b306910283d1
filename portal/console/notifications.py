"""The agent's notifications: the list, marking read, and the small JSON count the badge polls.

Polling every 15 s (portal/static/console.js) rather than a held-open stream: it works through
any proxy, costs one indexed count per agent per poll, and never keeps the server from
stopping.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import update
from sqlmodel import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from portal.console.common import (
    Ctx,
    NotFound,
    console_page,
    redirect,
    render,
    secure_headers,
    services_of,
    unread_count,
)
from storage.models import Notification, Ticket

SHOWN = 100


def ticket_refs(s, ticket_ids: set[int]) -> dict[int, str]:
    if not ticket_ids:
        return {}
    rows = s.exec(select(Ticket).where(Ticket.id.in_(ticket_ids)))  # type: ignore[union-attr]
    return {t.id: t.reference for t in rows}


def _mine(ctx: Ctx) -> tuple:
    return (Notification.workspace_id == ctx.workspace.id,
            Notification.agent_id == ctx.agent.id)


@console_page
async def listing(request: Request, ctx: Ctx) -> Response:
    def load() -> tuple[list[Notification], dict[int, str]]:
        with services_of(request).store.read() as s:
            rows = list(s.exec(select(Notification).where(*_mine(ctx))
                               .order_by(Notification.id.desc()).limit(SHOWN)))  # type: ignore[union-attr]
            return rows, ticket_refs(s, {n.ticket_id for n in rows if n.ticket_id})  # type: ignore[misc]
    rows, refs = await asyncio.to_thread(load)
    return render(request, "console/notifications.html", ctx, nav="notifications",
                  notifications=rows, refs=refs)


@console_page
async def mark_read(request: Request, ctx: Ctx) -> Response:
    def post() -> None:
        with services_of(request).store.tx() as s:
            n = s.get(Notification, request.path_params["id"])
            if n is None or n.agent_id != ctx.agent.id or n.workspace_id != ctx.workspace.id:
                raise NotFound("notification")
            n.read = True
            s.add(n)
    await asyncio.to_thread(post)
    return redirect("/console/notifications")


@console_page
async def mark_all_read(request: Request, ctx: Ctx) -> Response:
    def post() -> None:
        with services_of(request).store.tx() as s:
            s.exec(update(Notification).where(*_mine(ctx), Notification.read == False)  # noqa: E712
                   .values(read=True))
    await asyncio.to_thread(post)
    return redirect("/console/notifications")


@console_page(json=True)
async def count(request: Request, ctx: Ctx) -> Response:
    def load() -> int:
        with services_of(request).store.read() as s:
            return unread_count(s, ctx.agent)
    return secure_headers(JSONResponse({"unread": await asyncio.to_thread(load)}))


routes = [
    Route("/console/notifications", listing, methods=["GET"]),
    Route("/console/notifications/read-all", mark_all_read, methods=["POST"]),
    Route("/console/notifications/{id:int}/read", mark_read, methods=["POST"]),
    Route("/console/notifications/count", count, methods=["GET"]),
]
