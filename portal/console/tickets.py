"""The queue, a ticket, and what an agent does to it: reply (with files), note, status/priority/
assignee. Lookups are the agents' API's (same filters, same urgency order, same detail);
changes go through gateway/agent_actions like every other channel."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import urlencode

from sqlmodel import Session, select
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.intake import NewFile
from portal.api_agent import CHANNELS, list_tickets, ticket_detail
from portal.api_auth import ApiError, Caller
from portal.api_files import ALLOWED, MAX_FILE_SIZE, MAX_FILES, check_file
from portal.console.common import (
    Ctx,
    NotFound,
    actions,
    console_page,
    redirect,
    render,
    services_of,
)
from portal.downloads import download, ticket_file
from storage.models import (
    PRIORITIES,
    STATUS_LABELS,
    TICKET_STATUSES,
    Agent,
    Comment,
    Ticket,
)

REFERENCE = re.compile(r"^(?:TKT-)?(\d{1,9})$", re.IGNORECASE)
FILTERS = ("status", "channel", "assignee", "q")
PAGE = 50


def find_ticket(s: Session, ctx: Ctx, ref: str) -> Ticket:
    """The ticket of the agent's workspace; another workspace's answers like a missing one."""
    m = REFERENCE.match(ref.strip())
    ticket = s.exec(select(Ticket).where(Ticket.workspace_id == ctx.workspace.id,
                                         Ticket.number == int(m.group(1)))).first() if m else None
    if ticket is None:
        raise NotFound(ref)
    return ticket


def _agents(s: Session, ctx: Ctx) -> list[Agent]:
    return list(s.exec(select(Agent).where(Agent.workspace_id == ctx.workspace.id)
                       .order_by(Agent.name)))


# -- the queue ------------------------------------------------------------------------------------

@console_page
async def queue(request: Request, ctx: Ctx) -> Response:
    result = await asyncio.to_thread(list_tickets, request, Caller(ctx.agent, ctx.workspace))

    def agents() -> list[Agent]:
        with services_of(request).store.read() as s:
            return _agents(s, ctx)
    chosen = {k: request.query_params.get(k, "") for k in FILTERS}
    offset = result["offset"]
    kept = {k: v for k, v in chosen.items() if v}
    pages = {
        "prev": urlencode({**kept, "offset": max(0, offset - PAGE)}) if offset else None,
        "next": urlencode({**kept, "offset": offset + PAGE})
        if offset + len(result["tickets"]) < result["total"] else None,
    }
    return render(request, "console/queue.html", ctx, nav="queue", result=result,
                  chosen=chosen, agents=await asyncio.to_thread(agents), pages=pages,
                  statuses=STATUS_LABELS, channels=CHANNELS)


# -- one ticket -----------------------------------------------------------------------------------

@console_page
async def ticket(request: Request, ctx: Ctx) -> Response:
    def load() -> tuple[dict, list[Agent]]:
        with services_of(request).store.read() as s:
            return ticket_detail(s, find_ticket(s, ctx, request.path_params["ref"])), \
                _agents(s, ctx)
    detail, agents = await asyncio.to_thread(load)
    return render(request, "console/ticket.html", ctx, nav="queue", t=detail, agents=agents,
                  statuses=STATUS_LABELS, priorities=PRIORITIES, max_files=MAX_FILES,
                  max_mb=MAX_FILE_SIZE // 2**20,
                  accept=",".join(f".{ext}" for ext in sorted(ALLOWED)),
                  done=request.query_params.get("done", ""))


async def _files(ctx: Ctx) -> list[NewFile]:
    """The uploaded files, each checked against the API's allowlist (name, type and bytes)."""
    assert ctx.form is not None
    files = []
    for name, value in ctx.form.multi_items():
        if name == "files" and isinstance(value, UploadFile) and value.filename:
            data = await value.read(MAX_FILE_SIZE + 1)
            files.append(check_file(value.filename, value.content_type or "", data))
    return files


@console_page
async def reply(request: Request, ctx: Ctx) -> Response:
    files = await _files(ctx)
    body, internal = ctx.text("body"), ctx.text("internal") == "1"
    svc = services_of(request)

    def post() -> tuple[str, int]:
        with svc.store.tx() as s:
            t = find_ticket(s, ctx, request.path_params["ref"])
            agent = s.get(Agent, ctx.agent.id)
            comment = actions(request).reply(s, t, agent, body, files=files,  # type: ignore[arg-type]
                                             internal=internal)
            return t.reference, comment.id  # type: ignore[return-value]
    ref, comment_id = await asyncio.to_thread(post)
    svc.mailer.wake()
    done = "noted" if internal else "replied"
    return redirect(f"/console/tickets/{ref}?done={done}#c{comment_id}")


@console_page
async def update(request: Request, ctx: Ctx) -> Response:
    status, priority = ctx.text("status"), ctx.text("priority")
    if status and status not in TICKET_STATUSES:
        raise ApiError(422, f"Unknown status {status!r}.")
    if priority and priority not in PRIORITIES:
        raise ApiError(422, f"Unknown priority {priority!r}.")
    assignee_field = ctx.text("assignee")
    svc = services_of(request)

    def post() -> str:
        with svc.store.tx() as s:
            t = find_ticket(s, ctx, request.path_params["ref"])
            agent = s.get(Agent, ctx.agent.id)
            assignee, unassign = None, False
            if ctx.form is not None and "assignee" in ctx.form:
                if assignee_field in ("", "none"):
                    unassign = True
                else:
                    assignee = s.get(Agent, int(assignee_field)) \
                        if assignee_field.isdigit() else None
                    if assignee is None or assignee.workspace_id != ctx.workspace.id:
                        raise ApiError(422, "No such agent in this workspace.")
            resolution = ctx.text("resolution") if ctx.form is not None \
                and "resolution" in ctx.form else None
            actions(request).update(s, t, agent, status=status or None,  # type: ignore[arg-type]
                                    priority=priority or None, resolution=resolution,
                                    assignee=assignee, unassign=unassign)
            return t.reference
    ref = await asyncio.to_thread(post)
    svc.mailer.wake()
    return redirect(f"/console/tickets/{ref}?done=updated")


@console_page
async def accept(request: Request, ctx: Ctx) -> Response:
    """A held reply accepted as the customer's (see AgentActions.accept_held)."""
    svc = services_of(request)

    def post() -> str:
        with svc.store.tx() as s:
            t = find_ticket(s, ctx, request.path_params["ref"])
            comment = s.get(Comment, request.path_params["id"])
            if comment is None or comment.ticket_id != t.id or not comment.held_reason:
                raise ApiError(404, "No such held reply on this ticket.")
            actions(request).accept_held(s, t, s.get(Agent, ctx.agent.id), comment)  # type: ignore[arg-type]
            return t.reference
    ref = await asyncio.to_thread(post)
    return redirect(f"/console/tickets/{ref}?done=accepted#c{request.path_params['id']}")


@console_page
async def attachment(request: Request, ctx: Ctx) -> Response:
    """The file as a download, never rendered in the console's origin (an SVG may hold script)."""
    svc = services_of(request)
    try:
        found = await asyncio.to_thread(
            ticket_file, svc.store, svc.blobs,
            lambda s: find_ticket(s, ctx, request.path_params["ref"]), request.path_params["id"])
    except (OSError, ValueError):
        raise ApiError(410, "The file's content is no longer stored.") from None
    if found is None:
        raise NotFound("attachment")
    return download(*found)


routes = [
    Route("/console/tickets", queue, methods=["GET"]),
    Route("/console/tickets/{ref}", ticket, methods=["GET"]),
    Route("/console/tickets/{ref}/reply", reply, methods=["POST"]),
    Route("/console/tickets/{ref}/update", update, methods=["POST"]),
    Route("/console/tickets/{ref}/attachments/{id:int}", attachment, methods=["GET"]),
    Route("/console/tickets/{ref}/comments/{id:int}/accept", accept, methods=["POST"]),
]
