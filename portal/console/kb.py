"""The knowledge-base editor: list, create, edit, publish/unpublish, visibility.

The rules are the API's (portal/api_settings.py): a title of 1 to 200 characters, unique in
the workspace; visibility public, workspace or internal; an article of another workspace
answers like one that does not exist.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from portal.api_auth import ApiError
from portal.api_settings import VISIBILITIES
from portal.console.common import Ctx, NotFound, console_page, redirect, render, services_of
from storage.models import KBArticle, utcnow


def _fields(ctx: Ctx) -> dict[str, Any]:
    title = ctx.text("title").strip()
    if not title or len(title) > 200:
        raise ApiError(422, "The title must be 1 to 200 characters.")
    visibility = ctx.text("visibility") or "public"
    if visibility not in VISIBILITIES:
        raise ApiError(422, f"Visibility must be one of: {', '.join(VISIBILITIES)}.")
    return {"title": title, "body": ctx.text("body").replace("\r\n", "\n"),
            "published": ctx.text("published") == "1", "visibility": visibility}


def _article(s: Session, ctx: Ctx, article_id: int) -> KBArticle:
    a = s.get(KBArticle, article_id)
    if a is None or a.workspace_id != ctx.workspace.id:
        raise NotFound("article")
    return a


def _save(request: Request, fn) -> Any:
    try:
        with services_of(request).store.tx() as s:
            return fn(s)
    except IntegrityError:
        raise ApiError(409, "An article with that title exists already.") from None


@console_page
async def listing(request: Request, ctx: Ctx) -> Response:
    def load() -> list[KBArticle]:
        with services_of(request).store.read() as s:
            return list(s.exec(select(KBArticle).where(KBArticle.workspace_id == ctx.workspace.id)
                               .order_by(KBArticle.title)))
    return render(request, "console/kb_list.html", ctx, nav="kb",
                  articles=await asyncio.to_thread(load))


@console_page
async def new(request: Request, ctx: Ctx) -> Response:
    if request.method == "GET":
        return render(request, "console/kb_edit.html", ctx, nav="kb", article=None,
                      visibilities=VISIBILITIES)
    values = _fields(ctx)

    def create(s: Session) -> int:
        a = KBArticle(workspace_id=ctx.workspace.id, **values)  # type: ignore[arg-type]
        s.add(a)
        s.flush()
        return a.id  # type: ignore[return-value]
    article_id = await asyncio.to_thread(_save, request, create)
    return redirect(f"/console/kb/{article_id}?done=saved")


@console_page
async def edit(request: Request, ctx: Ctx) -> Response:
    article_id = request.path_params["id"]
    if request.method == "GET":
        def load() -> KBArticle:
            with services_of(request).store.read() as s:
                return _article(s, ctx, article_id)
        return render(request, "console/kb_edit.html", ctx, nav="kb",
                      article=await asyncio.to_thread(load), visibilities=VISIBILITIES,
                      done=request.query_params.get("done", ""))
    values = _fields(ctx)

    def save(s: Session) -> None:
        a = _article(s, ctx, article_id)
        for name, value in values.items():
            setattr(a, name, value)
        a.updated_at = utcnow()
        s.add(a)
        s.flush()
    await asyncio.to_thread(_save, request, save)
    return redirect(f"/console/kb/{article_id}?done=saved")


@console_page
async def publish(request: Request, ctx: Ctx) -> Response:
    """The list's one-click publish / unpublish."""
    article_id = request.path_params["id"]
    published = ctx.text("published") == "1"

    def save(s: Session) -> None:
        a = _article(s, ctx, article_id)
        a.published, a.updated_at = published, utcnow()
        s.add(a)
    await asyncio.to_thread(_save, request, save)
    return redirect("/console/kb")


routes = [
    Route("/console/kb", listing, methods=["GET"]),
    Route("/console/kb/new", new, methods=["GET", "POST"]),
    Route("/console/kb/{id:int}", edit, methods=["GET", "POST"]),
    Route("/console/kb/{id:int}/publish", publish, methods=["POST"]),
]
