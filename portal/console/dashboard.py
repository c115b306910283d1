"""The support dashboard: the queue at a glance, the Customer Portal card and embed snippets,
and the agent's availability (away agents are skipped by auto-assignment)."""

from __future__ import annotations

import asyncio

from sqlalchemy import func
from sqlmodel import select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.assignment import OPEN_STATUSES
from portal.console.common import Ctx, actions, console_page, redirect, render, services_of
from storage.models import Agent, Ticket


def snippets(public_url: str, slug: str) -> dict[str, str]:
    """The portal link and the ready-to-paste embeds (the portal serves what they load)."""
    portal = f"{public_url}/portal/{slug}/submit"
    return {
        "portal": portal,
        # The same one-liners as the README's: the script finds its workspace in its address.
        "iframe": (f'<iframe src="{portal}?embed=1" title="Contact support" '
                   'style="width:100%;min-height:720px;border:0" loading="lazy"></iframe>'),
        "widget": f'<script src="{public_url}/portal/{slug}/widget.js" async></script>',
    }


def _counts(request: Request, ctx: Ctx) -> dict[str, int]:
    with services_of(request).store.read() as s:
        base = select(func.count()).select_from(Ticket).where(
            Ticket.workspace_id == ctx.workspace.id,
            Ticket.status.in_(OPEN_STATUSES))  # type: ignore[attr-defined]
        return {
            "open": s.exec(base).one(),
            "mine": s.exec(base.where(Ticket.assignee_id == ctx.agent.id)).one(),
            "unassigned": s.exec(base.where(Ticket.assignee_id.is_(None))).one(),  # type: ignore[union-attr]
        }


@console_page
async def dashboard(request: Request, ctx: Ctx) -> Response:
    counts = await asyncio.to_thread(_counts, request, ctx)
    public_url = services_of(request).settings.public_url.rstrip("/")
    return render(request, "console/dashboard.html", ctx, counts=counts,
                  snippets=snippets(public_url, ctx.workspace.slug), nav="dashboard")


@console_page
async def availability(request: Request, ctx: Ctx) -> Response:
    available = ctx.text("available") == "1"

    def save() -> None:
        with services_of(request).store.tx() as s:
            agent = s.get(Agent, ctx.agent.id)
            actions(request).set_availability(s, agent, available)  # type: ignore[arg-type]
    await asyncio.to_thread(save)
    return redirect("/console/")


routes = [
    Route("/console/", dashboard, methods=["GET"]),
    Route("/console/availability", availability, methods=["POST"]),
]
