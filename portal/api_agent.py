"""The agents' JSON API: the queue, a ticket, replies and notes, status changes, notifications.

Paths are stable (outside tools use them); /api/agent/openapi.json describes them. Every
lookup is scoped to the caller's workspace. Ticket changes go through gateway/agent_actions,
the same service layer the console and the mail channel use.

Status, priority and assignee can be changed on `POST .../status` and on `PATCH
/api/agent/tickets/{ref}`: both take any of `status`, `resolution`, `priority`, `assignee`.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from sqlalchemy import case, exists, func, or_
from sqlmodel import Session, select
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.agent_actions import AgentActions
from gateway.intake import NewFile
from portal import api_settings
from portal.api_auth import (
    MAX_ROW_ID,
    ApiError,
    Caller,
    agent_api,
    field,
    iso,
    json_object,
    not_found,
    row_id,
    services_of,
    storable,
    unknown_fields,
)
from portal.api_files import MAX_FILE_SIZE, MAX_FILES, check_file
from portal.api_openapi import openapi
from portal.downloads import download, ticket_file
from storage.models import (
    PRIORITIES,
    TICKET_STATUSES,
    Agent,
    Attachment,
    Comment,
    Contact,
    CSATRating,
    Notification,
    Ticket,
    TicketParticipant,
)

NEGATIVE = -0.05  # VADER's usual threshold for a negative text
CHANNELS = ("email", "portal", "imap", "api")
REFERENCE = re.compile(r"^(?:TKT-)?(\d{1,9})$", re.IGNORECASE)
UPDATE_FIELDS = {"status", "resolution", "priority", "assignee"}


def actions(request: Request) -> AgentActions:
    svc = services_of(request)
    return AgentActions(svc.store, svc.blobs, svc.mailer)


# -- JSON shapes ----------------------------------------------------------------------------------

def agent_json(a: Agent | None) -> dict | None:
    if a is None:
        return None
    return {"id": a.id, "name": a.name, "email": a.email, "available": a.available}


def attachment_json(a: Attachment, ref: str) -> dict:
    return {"id": a.id, "filename": a.filename, "content_type": a.content_type, "size": a.size,
            "inline": a.inline, "url": f"/api/agent/tickets/{ref}/attachments/{a.id}"}


def ticket_summary(t: Ticket, contact: Contact, agents: dict[int, Agent]) -> dict:
    return {
        "reference": t.reference, "subject": t.subject, "status": t.status,
        "status_label": t.status_label, "priority": t.priority, "channel": t.channel,
        "type": t.type, "sentiment": t.sentiment,
        "assignee": agent_json(agents.get(t.assignee_id)) if t.assignee_id else None,
        "customer": {"name": contact.name, "email": contact.email},
        "created_at": iso(t.created_at), "updated_at": iso(t.updated_at),
        "resolved_at": iso(t.resolved_at),
    }


def _agents(s: Session, workspace_id: int) -> dict[int, Agent]:
    return {a.id: a for a in s.exec(select(Agent).where(Agent.workspace_id == workspace_id))}  # type: ignore[misc]


def ticket_detail(s: Session, t: Ticket) -> dict:
    contact = s.get(Contact, t.contact_id)
    assert contact is not None
    ref = t.reference
    files = list(s.exec(select(Attachment).where(Attachment.ticket_id == t.id)
                        .order_by(Attachment.id)))
    comments = list(s.exec(select(Comment).where(Comment.ticket_id == t.id)
                           .order_by(Comment.created_at, Comment.id)))
    csat = s.exec(select(CSATRating).where(CSATRating.ticket_id == t.id)).first()
    participants = s.exec(select(TicketParticipant).where(TicketParticipant.ticket_id == t.id)
                          .order_by(TicketParticipant.id))
    return {
        **ticket_summary(t, contact, _agents(s, t.workspace_id)),
        "description": t.description, "resolution": t.resolution,
        "participants": [{"name": p.name, "email": p.email} for p in participants],
        "attachments": [attachment_json(a, ref) for a in files if a.comment_id is None],
        "comments": [{
            "id": c.id, "author_kind": c.author_kind, "author_name": c.author_name,
            "author_email": c.author_email, "agent_id": c.agent_id, "body": c.body,
            "internal": c.internal, "held_reason": c.held_reason, "created_at": iso(c.created_at),
            "attachments": [attachment_json(a, ref) for a in files if a.comment_id == c.id],
        } for c in comments],
        "csat": {"rating": csat.rating, "comment": csat.comment} if csat else None,
    }


def _ticket(s: Session, caller: Caller, ref: str) -> Ticket:
    m = REFERENCE.match(ref.strip())
    ticket = s.exec(select(Ticket).where(Ticket.workspace_id == caller.workspace.id,
                                         Ticket.number == int(m.group(1)))).first() if m else None
    if ticket is None:
        raise not_found(f"ticket {ref}")
    return ticket


def _agent_ref(s: Session, caller: Caller, value: Any) -> Agent | None:
    """An agent of the caller's workspace by id, email or "me"; None means nobody."""
    if value is None:
        return None
    if value == "me":
        value = caller.agent.id
    q = select(Agent).where(Agent.workspace_id == caller.workspace.id)
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 < value <= MAX_ROW_ID:  # no agent has it, and the driver would overflow
            raise ApiError(422, f"no agent {value!r} in this workspace")
        q = q.where(Agent.id == value)
    elif isinstance(value, str):
        q = q.where(Agent.email == value.strip().lower())
    else:
        raise ApiError(422, "'assignee' must be an agent id, an email, \"me\" or null")
    agent = s.exec(q).first()
    if agent is None:
        raise ApiError(422, f"no agent {value!r} in this workspace")
    return agent


# -- the queue ------------------------------------------------------------------------------------

def _csv(value: str | None, allowed: tuple[str, ...], name: str) -> list[str]:
    items = [v.strip().lower() for v in (value or "").split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad:
        raise ApiError(400, f"{name} {', '.join(bad)!r} unknown; use: {', '.join(allowed)}")
    return items


def _digits(value: str) -> bool:
    """0-9 only: str.isdigit() also says yes to "²", which int() refuses."""
    return value.isascii() and value.isdigit()


def _int(value: str | None, name: str, default: int, top: int) -> int:
    if value is None or value == "":
        return default
    if not _digits(value) or not 0 <= int(value) <= top:
        raise ApiError(400, f"{name} must be a whole number from 0 to {top}")
    return int(value)


def _like(text: str) -> str:
    return "%" + re.sub(r"([\\%_])", r"\\\1", text.lower()) + "%"


def list_tickets(request: Request, caller: Caller) -> dict:
    p = request.query_params
    if not all(storable(v) for v in p.values()):
        raise ApiError(400, "query parameters cannot contain NUL (%00)")
    statuses = _csv(p.get("status"), TICKET_STATUSES, "status")
    channels = _csv(p.get("channel"), CHANNELS, "channel")
    limit = _int(p.get("limit"), "limit", 50, 200)
    offset = _int(p.get("offset"), "offset", 0, 10**9)
    with services_of(request).store.read() as s:
        q = (select(Ticket, Contact).join(Contact, Contact.id == Ticket.contact_id)  # type: ignore[arg-type]
             .where(Ticket.workspace_id == caller.workspace.id))
        if statuses:
            q = q.where(Ticket.status.in_(statuses))  # type: ignore[attr-defined]
        if channels:
            q = q.where(Ticket.channel.in_(channels))  # type: ignore[attr-defined]
        assignee = p.get("assignee")
        if assignee in ("none", "unassigned"):
            q = q.where(Ticket.assignee_id.is_(None))  # type: ignore[union-attr]
        elif assignee:
            key: Any = int(assignee) if _digits(assignee) else assignee
            q = q.where(Ticket.assignee_id == _agent_ref(s, caller, key).id)  # type: ignore[union-attr]
        text = (p.get("q") or "").strip()
        if text:
            pattern = _like(text)
            m = REFERENCE.match(text)
            in_comments = exists().where(Comment.ticket_id == Ticket.id,
                                         func.lower(Comment.body).like(pattern, escape="\\"))
            q = q.where(or_(
                func.lower(Ticket.subject).like(pattern, escape="\\"),
                func.lower(Ticket.description).like(pattern, escape="\\"),
                func.lower(Contact.email).like(pattern, escape="\\"),
                func.lower(Contact.name).like(pattern, escape="\\"),
                in_comments,
                Ticket.number == (int(m.group(1)) if m else -1),
            ))
        total = s.exec(select(func.count()).select_from(q.subquery())).one()
        negative_first = case((Ticket.sentiment <= NEGATIVE, 0), else_=1)
        rows = s.exec(q.order_by(negative_first, Ticket.created_at, Ticket.id)
                      .limit(limit).offset(offset)).all()
        agents = _agents(s, caller.workspace.id)  # type: ignore[arg-type]
        return {"tickets": [ticket_summary(t, c, agents) for t, c in rows], "total": total,
                "limit": limit, "offset": offset}


@agent_api
async def tickets(request: Request, caller: Caller) -> Response:
    return JSONResponse(await asyncio.to_thread(list_tickets, request, caller))


@agent_api
async def ticket(request: Request, caller: Caller) -> Response:
    def load() -> dict:
        with services_of(request).store.read() as s:
            return ticket_detail(s, _ticket(s, caller, request.path_params["ref"]))
    return JSONResponse(await asyncio.to_thread(load))


@agent_api
async def attachment(request: Request, caller: Caller) -> Response:
    """The file itself; never rendered by the browser (an SVG could carry script)."""
    svc = services_of(request)
    file_id = row_id(request, "attachment")
    try:
        found = await asyncio.to_thread(
            ticket_file, svc.store, svc.blobs,
            lambda s: _ticket(s, caller, request.path_params["ref"]), file_id)
    except (OSError, ValueError):
        raise ApiError(410, "the file's content is no longer stored") from None
    if found is None:
        raise not_found("attachment")
    return download(*found)


# -- replies and changes --------------------------------------------------------------------------

_TRUE = ("1", "true", "yes", "on")


async def _reply_input(request: Request) -> tuple[str, bool, list[NewFile]]:
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != "multipart/form-data":
        data = await json_object(request)
        unknown_fields(data, {"body", "internal"})
        body = field(data, "body", str, required=True)
        return body, bool(field(data, "internal", bool)), []
    limit = MAX_FILES * MAX_FILE_SIZE + 1024 * 1024
    if int(request.headers.get("content-length") or 0) > limit:
        raise ApiError(413, f"at most {MAX_FILES} files of {MAX_FILE_SIZE // 2**20} MB each")
    try:
        form = await request.form(max_files=MAX_FILES, max_fields=10)
    except HTTPException as e:
        raise ApiError(400, f"the form cannot be read: {e.detail}") from None
    try:
        files = []
        for _name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if not value.filename:
                    continue
                data = await value.read(MAX_FILE_SIZE + 1)
                files.append(check_file(value.filename, value.content_type or "", data))
        body = form.get("body")
        body = body if isinstance(body, str) else ""
        if not storable(body):
            raise ApiError(422, "'body' cannot contain NUL (\\u0000)")
        internal = str(form.get("internal") or "").strip().lower() in _TRUE
    finally:
        await form.close()
    return body, internal, files


@agent_api
async def replies(request: Request, caller: Caller) -> Response:
    body, internal, files = await _reply_input(request)
    svc = services_of(request)

    def post() -> dict:
        with svc.store.tx() as s:
            t = _ticket(s, caller, request.path_params["ref"])
            agent = s.get(Agent, caller.agent.id)
            comment = actions(request).reply(s, t, agent, body, files=files,  # type: ignore[arg-type]
                                             internal=internal)
            detail = ticket_detail(s, t)
        svc.mailer.wake()
        return next(c for c in detail["comments"] if c["id"] == comment.id)
    return JSONResponse(await asyncio.to_thread(post), status_code=201)


@agent_api
async def change(request: Request, caller: Caller) -> Response:
    """POST .../status and PATCH .../{ref}: status (+resolution), priority, assignee."""
    data = await json_object(request)
    unknown_fields(data, UPDATE_FIELDS)
    if not set(data) & UPDATE_FIELDS:
        raise ApiError(422, f"send at least one of: {', '.join(sorted(UPDATE_FIELDS))}")
    status = field(data, "status", str)
    priority = field(data, "priority", str)
    resolution = field(data, "resolution", str, nullable=True)
    for name, value, allowed in (("status", status, TICKET_STATUSES),
                                 ("priority", priority, PRIORITIES)):
        if value is not None and value not in allowed:
            raise ApiError(422, f"{name} {value!r} unknown; use one of: {', '.join(allowed)}")
    svc = services_of(request)

    def post() -> dict:
        with svc.store.tx() as s:
            t = _ticket(s, caller, request.path_params["ref"])
            agent = s.get(Agent, caller.agent.id)
            assignee, unassign = None, False
            if "assignee" in data:
                assignee = _agent_ref(s, caller, data["assignee"])
                unassign = assignee is None
            actions(request).update(s, t, agent, status=status, priority=priority,  # type: ignore[arg-type]
                                    resolution=(resolution or "") if "resolution" in data
                                    else None, assignee=assignee, unassign=unassign)
            detail = ticket_detail(s, t)
        svc.mailer.wake()
        return detail
    return JSONResponse(await asyncio.to_thread(post))


# -- notifications and the agent themself ---------------------------------------------------------

def notification_json(n: Notification, refs: dict[int, str]) -> dict:
    return {"id": n.id, "kind": n.kind, "text": n.text, "read": n.read,
            "ticket": refs.get(n.ticket_id) if n.ticket_id else None,  # type: ignore[arg-type]
            "created_at": iso(n.created_at)}


def _refs(s: Session, ticket_ids: set[int]) -> dict[int, str]:
    if not ticket_ids:
        return {}
    rows = s.exec(select(Ticket).where(Ticket.id.in_(ticket_ids)))  # type: ignore[union-attr]
    return {t.id: t.reference for t in rows}  # type: ignore[misc]


@agent_api
async def notifications(request: Request, caller: Caller) -> Response:
    unread_only = request.query_params.get("unread", "").lower() in _TRUE
    limit = _int(request.query_params.get("limit"), "limit", 50, 200)

    def load() -> dict:
        with services_of(request).store.read() as s:
            mine = (Notification.workspace_id == caller.workspace.id,
                    Notification.agent_id == caller.agent.id)
            q = select(Notification).where(*mine)
            if unread_only:
                q = q.where(Notification.read == False)  # noqa: E712
            rows = list(s.exec(q.order_by(Notification.id.desc()).limit(limit)))  # type: ignore[union-attr]
            unread = s.exec(select(func.count()).select_from(Notification).where(
                *mine, Notification.read == False)).one()  # noqa: E712
            refs = _refs(s, {n.ticket_id for n in rows if n.ticket_id})
            return {"notifications": [notification_json(n, refs) for n in rows],
                    "unread": unread}
    return JSONResponse(await asyncio.to_thread(load))


@agent_api
async def notification_read(request: Request, caller: Caller) -> Response:
    raw_id = row_id(request, "notification")

    def post() -> dict:
        with services_of(request).store.tx() as s:
            n = s.get(Notification, raw_id)
            if n is None or n.agent_id != caller.agent.id \
                    or n.workspace_id != caller.workspace.id:
                raise not_found("notification")
            n.read = True
            s.add(n)
            return notification_json(n, _refs(s, {n.ticket_id} if n.ticket_id else set()))
    return JSONResponse(await asyncio.to_thread(post))


@agent_api
async def me(request: Request, caller: Caller) -> Response:
    return JSONResponse({**agent_json(caller.agent),  # type: ignore[dict-item]
                         "workspace": caller.workspace.slug})


@agent_api
async def availability(request: Request, caller: Caller) -> Response:
    """{"available": false} marks the agent away: auto-assignment skips them."""
    data = await json_object(request)
    unknown_fields(data, {"available"})
    available = field(data, "available", bool, required=True)

    def put() -> dict:
        with services_of(request).store.tx() as s:
            agent = s.get(Agent, caller.agent.id)
            actions(request).set_availability(s, agent, available)  # type: ignore[arg-type]
            return agent_json(agent)  # type: ignore[return-value]
    return JSONResponse(await asyncio.to_thread(put))


@agent_api
async def accept_comment(request: Request, caller: Caller) -> Response:
    """A reply held for review (an unknown sender, a failed DKIM check) made the customer's."""
    comment_id = row_id(request, "comment")

    def post() -> dict:
        with services_of(request).store.tx() as s:
            t = _ticket(s, caller, request.path_params["ref"])
            comment = s.get(Comment, comment_id)
            if comment is None or comment.ticket_id != t.id:
                raise not_found("comment")
            if not comment.held_reason:
                raise ApiError(409, "only a reply held for review can be accepted")
            agent = s.get(Agent, caller.agent.id)
            actions(request).accept_held(s, t, agent, comment)  # type: ignore[arg-type]
            return {"id": comment.id, "internal": comment.internal,
                    "author_kind": comment.author_kind, "status": t.status}
    return JSONResponse(await asyncio.to_thread(post))


async def openapi_json(request: Request) -> Response:
    return JSONResponse(openapi())


routes = [
    Route("/api/agent/openapi.json", openapi_json, methods=["GET"]),
    Route("/api/agent/tickets", tickets, methods=["GET"]),
    Route("/api/agent/tickets/{ref}", ticket, methods=["GET"]),
    Route("/api/agent/tickets/{ref}", change, methods=["PATCH"], name="ticket_patch"),
    Route("/api/agent/tickets/{ref}/replies", replies, methods=["POST"]),
    Route("/api/agent/tickets/{ref}/status", change, methods=["POST"]),
    Route("/api/agent/tickets/{ref}/attachments/{id:int}", attachment, methods=["GET"]),
    Route("/api/agent/tickets/{ref}/comments/{id:int}/accept", accept_comment,
          methods=["POST"]),
    Route("/api/agent/notifications", notifications, methods=["GET"]),
    Route("/api/agent/notifications/{id:int}/read", notification_read, methods=["POST"]),
    Route("/api/agent/me", me, methods=["GET"]),
    Route("/api/agent/me/availability", availability, methods=["PUT"]),
    *api_settings.routes,
]
