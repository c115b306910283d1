"""Workspace settings over the agents' API: white-label fields, support addresses, KB articles.

All of it is the caller's own workspace: there is no workspace id in these paths to get wrong,
and an article id of another workspace answers 404 like one that never existed.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.assignment import MODES
from portal.api_auth import (
    ApiError,
    Caller,
    agent_api,
    field,
    iso,
    json_object,
    not_found,
    row_id,
    services_of,
    unknown_fields,
)
from storage.models import DeflectionEvent, KBArticle, SupportAddress, Workspace, utcnow
from storage.store import normalise_address

COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
EMAIL = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+$")
LOGO = re.compile(r"^(?:https?://[^\s\"'<>]+|/[^\s\"'<>]*)$")
VISIBILITIES = ("public", "workspace", "internal")
WORKSPACE_FIELDS = {"name", "brand_name", "primary_color", "logo_url", "support_email",
                    "assignment_mode"}
KB_FIELDS = {"title", "body", "published", "visibility"}


def workspace_json(s: Session, ws: Workspace) -> dict:
    addresses = s.exec(select(SupportAddress.address).where(SupportAddress.workspace_id == ws.id)
                       .order_by(SupportAddress.id))
    return {"slug": ws.slug, "name": ws.name, "brand_name": ws.brand_name,
            "primary_color": ws.primary_color, "logo_url": ws.logo_url,
            "support_email": ws.support_email, "assignment_mode": ws.assignment_mode,
            "support_addresses": list(addresses), "portal_path": f"/portal/{ws.slug}"}


def _checked(data: dict[str, Any]) -> dict[str, Any]:
    """The workspace fields sent, each validated; "" or null clears an optional one."""
    unknown_fields(data, WORKSPACE_FIELDS)
    out: dict[str, Any] = {}
    for name in WORKSPACE_FIELDS & set(data):
        value = field(data, name, str, nullable=name != "name")
        value = value.strip() if isinstance(value, str) else None
        if name == "name" and not value:
            raise ApiError(422, "'name' cannot be empty")
        if value and len(value) > 500:
            raise ApiError(422, f"{name!r} is longer than 500 characters")
        checks = {"primary_color": (COLOR, "a colour like #7c3aed"),
                  "logo_url": (LOGO, "an http(s) URL or a path starting with /"),
                  "support_email": (EMAIL, "an email address")}
        if value and name in checks and not checks[name][0].match(value):
            raise ApiError(422, f"{name!r} must be {checks[name][1]}")
        if name == "assignment_mode" and value not in MODES:
            raise ApiError(422, f"'assignment_mode' must be one of: {', '.join(MODES)}")
        out[name] = value or None
    return out


@agent_api
async def workspace(request: Request, caller: Caller) -> Response:
    svc = services_of(request)
    changes = _checked(await json_object(request)) if request.method == "PATCH" else {}

    def run() -> dict:
        with svc.store.tx() as s:
            ws = s.get(Workspace, caller.workspace.id)
            assert ws is not None
            for name, value in changes.items():
                setattr(ws, name, value)
            s.add(ws)
            return workspace_json(s, ws)
    return JSONResponse(await asyncio.to_thread(run))


@agent_api
async def add_address(request: Request, caller: Caller) -> Response:
    data = await json_object(request)
    unknown_fields(data, {"address"})
    address = normalise_address(field(data, "address", str, required=True))
    if not EMAIL.match(address):
        raise ApiError(422, f"not an email address: {address!r}")
    svc = services_of(request)

    def run() -> dict:
        with svc.store.tx() as s:
            owner = svc.store.workspace_for_address(address, s)
            if owner is not None:
                raise ApiError(409, f"{address} is already a support address"
                               + (" of this workspace" if owner.id == caller.workspace.id
                                  else " of another workspace"))
            svc.store.add_support_address(s, caller.workspace.id, address)  # type: ignore[arg-type]
            return workspace_json(s, s.get(Workspace, caller.workspace.id))  # type: ignore[arg-type]
    return JSONResponse(await asyncio.to_thread(run), status_code=201)


@agent_api
async def remove_address(request: Request, caller: Caller) -> Response:
    address = normalise_address(request.path_params["address"])
    svc = services_of(request)

    def run() -> None:
        with svc.store.tx() as s:
            mine = svc.store.support_addresses(s, caller.workspace.id)
            if address not in mine:
                raise not_found(f"support address {address}")
            if len(mine) == 1:
                raise ApiError(409, "the last support address cannot be removed: "
                                    "mail could no longer reach this workspace")
            s.exec(delete(SupportAddress).where(SupportAddress.address == address,
                                                SupportAddress.workspace_id == caller.workspace.id))
    await asyncio.to_thread(run)
    return Response(status_code=204)


# -- knowledge base -------------------------------------------------------------------------------

def article_json(a: KBArticle) -> dict:
    return {"id": a.id, "title": a.title, "body": a.body, "published": a.published,
            "visibility": a.visibility, "created_at": iso(a.created_at),
            "updated_at": iso(a.updated_at)}


def _article_fields(data: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    unknown_fields(data, KB_FIELDS)
    out: dict[str, Any] = {}
    if "title" in data or creating:
        title = field(data, "title", str, required=True).strip()
        if not title or len(title) > 200:
            raise ApiError(422, "'title' must be 1 to 200 characters")
        out["title"] = title
    if "body" in data:
        out["body"] = field(data, "body", str)
    if "published" in data:
        out["published"] = field(data, "published", bool)
    if "visibility" in data:
        visibility = field(data, "visibility", str)
        if visibility not in VISIBILITIES:
            raise ApiError(422, f"'visibility' must be one of: {', '.join(VISIBILITIES)}")
        out["visibility"] = visibility
    return out


def _article(s: Session, caller: Caller, article_id: int) -> KBArticle:
    a = s.get(KBArticle, article_id)
    if a is None or a.workspace_id != caller.workspace.id:
        raise not_found("article")
    return a


def _save(svc, fn) -> Any:
    try:
        with svc.store.tx() as s:
            return fn(s)
    except IntegrityError:
        raise ApiError(409, "an article with that title exists already") from None


@agent_api
async def articles(request: Request, caller: Caller) -> Response:
    svc = services_of(request)
    if request.method == "GET":
        def load() -> dict:
            with svc.store.read() as s:
                rows = s.exec(select(KBArticle).where(KBArticle.workspace_id == caller.workspace.id)
                              .order_by(KBArticle.title))
                return {"articles": [article_json(a) for a in rows]}
        return JSONResponse(await asyncio.to_thread(load))
    values = _article_fields(await json_object(request), creating=True)

    def create(s: Session) -> dict:
        a = KBArticle(workspace_id=caller.workspace.id, **values)  # type: ignore[arg-type]
        s.add(a)
        s.flush()
        return article_json(a)
    return JSONResponse(await asyncio.to_thread(_save, svc, create), status_code=201)


@agent_api
async def article(request: Request, caller: Caller) -> Response:
    svc = services_of(request)
    article_id = row_id(request, "article")
    values = (_article_fields(await json_object(request), creating=False)
              if request.method == "PATCH" else {})

    def run(s: Session) -> dict | None:
        a = _article(s, caller, article_id)
        if request.method == "DELETE":
            s.exec(update(DeflectionEvent).where(DeflectionEvent.article_id == a.id)
                   .values(article_id=None))  # the analytics keep the event, not the link
            s.delete(a)
            return None
        if values:
            for name, value in values.items():
                setattr(a, name, value)
            a.updated_at = utcnow()
            s.add(a)
            s.flush()
        return article_json(a)
    result = await asyncio.to_thread(_save, svc, run)
    return Response(status_code=204) if result is None else JSONResponse(result)


routes = [
    Route("/api/agent/workspace", workspace, methods=["GET", "PATCH"]),
    Route("/api/agent/workspace/addresses", add_address, methods=["POST"]),
    Route("/api/agent/workspace/addresses/{address}", remove_address, methods=["DELETE"]),
    Route("/api/agent/kb", articles, methods=["GET", "POST"]),
    Route("/api/agent/kb/{id:int}", article, methods=["GET", "PATCH", "DELETE"]),
]
