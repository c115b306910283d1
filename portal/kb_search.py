"""Knowledge-base deflection: articles suggested while the subject is typed, and what came of it.

`GET /api/public/kb/search?slug=&q=&session=` answers with up to 5 ranked articles (and logs
them as shown for that session); opening one through the panel (`/portal/{slug}/kb/{id}?s=`)
logs a click; `POST /api/public/kb/events` logs a dismissal; the submit form logs
`submitted`. The session id is a random string the form carries; it names no person.

Deflection rate = tickets avoided / deflection sessions, where a deflection session is a
session that was shown at least one article, and a ticket avoided is such a session in which
an article was opened and no ticket was submitted.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass

from sqlalchemy import Engine, func
from sqlmodel import Session, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.services import Services
from portal.api_auth import MAX_ROW_ID
from portal.pages import not_found, page, workspace_of
from portal.ratelimit import limits_of
from storage.models import DeflectionEvent, KBArticle
from storage.search import search_articles

EVENTS = ("shown", "clicked", "dismissed", "submitted")
_SESSION = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def valid_session(session: str | None) -> bool:
    return bool(session) and bool(_SESSION.match(session or ""))


def log_event(s: Session, workspace_id: int, session: str, event: str,
              article_id: int | None = None) -> None:
    s.add(DeflectionEvent(workspace_id=workspace_id, session_id=session, event=event,
                          article_id=article_id))


def _log_shown(services: Services, workspace_id: int, session: str, ids: list[int]) -> None:
    """One `shown` row per article per session, however many keystrokes found it again."""
    with services.store.tx() as s:
        seen = set(s.exec(select(DeflectionEvent.article_id).where(
            DeflectionEvent.session_id == session, DeflectionEvent.event == "shown",
            DeflectionEvent.workspace_id == workspace_id)))
        for article_id in ids:
            if article_id not in seen:
                log_event(s, workspace_id, session, "shown", article_id)


async def search(request: Request) -> Response:
    services: Services = request.app.state.services
    q = request.query_params.get("q", "")[:200]
    session = request.query_params.get("session", "")
    ws = await workspace_of(request, request.query_params.get("slug", ""))
    if ws is None:
        return JSONResponse({"error": "no such workspace"}, status_code=404)
    limits = limits_of(request)
    if not await limits.hit("search", limits.client_ip(request)):
        return JSONResponse({"error": "too many searches"}, status_code=429)
    hits = await asyncio.to_thread(search_articles, services.engine, ws.id, q)  # type: ignore[arg-type]
    if hits and valid_session(session):
        await asyncio.to_thread(_log_shown, services, ws.id, session, [h.id for h in hits])
    suffix = f"?s={session}" if valid_session(session) else ""
    return JSONResponse({"articles": [
        {"id": h.id, "title": h.title, "snippet": h.snippet,
         "url": f"/portal/{ws.slug}/kb/{h.id}{suffix}"} for h in hits]},
        headers={"Cache-Control": "no-store"})


async def event(request: Request) -> Response:
    """POST {slug, session, event, article_id?}: a dismissal (or click) the page reports."""
    services: Services = request.app.state.services
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return JSONResponse({"error": "expected JSON"}, status_code=400)
    if not isinstance(body, dict):
        return JSONResponse({"error": "expected a JSON object"}, status_code=400)
    kind, session = body.get("event"), str(body.get("session", ""))
    if kind not in ("dismissed", "clicked") or not valid_session(session):
        return JSONResponse({"error": "event must be dismissed or clicked, with a session"},
                            status_code=400)
    ws = await workspace_of(request, str(body.get("slug", "")))
    if ws is None:
        return JSONResponse({"error": "no such workspace"}, status_code=404)
    article = body.get("article_id")
    article_id = article if isinstance(article, int) and not isinstance(article, bool) else None

    def write() -> None:
        with services.store.tx() as s:
            if article_id is not None and (not 0 < article_id <= MAX_ROW_ID or _visible(
                    s.get(KBArticle, article_id), ws.id) is None):
                return  # an id no row can have is an unknown article: ignored, not a 500
            log_event(s, ws.id, session, kind, article_id)  # type: ignore[arg-type]

    await asyncio.to_thread(write)
    return Response(status_code=204)


def _visible(article: KBArticle | None, workspace_id: int | None) -> KBArticle | None:
    if (article is None or article.workspace_id != workspace_id or not article.published
            or article.visibility not in ("public", "workspace")):
        return None
    return article


async def article_page(request: Request) -> Response:
    services: Services = request.app.state.services
    ws = await workspace_of(request, request.path_params["slug"])
    raw_id = request.path_params["article_id"]
    if (ws is None or not (raw_id.isascii() and raw_id.isdigit())  # "²".isdigit() is True
            or int(raw_id) > MAX_ROW_ID):
        return not_found(request, ws)

    def load() -> KBArticle | None:
        with services.store.tx() as s:
            article = _visible(s.get(KBArticle, int(raw_id)), ws.id)
            session = request.query_params.get("s", "")
            if article is not None and valid_session(session):
                log_event(s, ws.id, session, "clicked", article.id)  # type: ignore[arg-type]
            return article

    article = await asyncio.to_thread(load)
    if article is None:
        return not_found(request, ws)
    return page(request, "article.html", workspace=ws, article=article, embed=False)


@dataclass(frozen=True)
class Deflection:
    sessions: int  # shown at least one article
    avoided: int  # of those: opened an article and submitted no ticket

    @property
    def rate(self) -> float:
        return self.avoided / self.sessions if self.sessions else 0.0


def deflection(engine: Engine, workspace_id: int) -> Deflection:
    """The workspace's deflection numbers, as defined in this module's docstring."""
    def sessions_with(s: Session, kind: str) -> set[str]:
        return set(s.exec(select(DeflectionEvent.session_id).where(
            DeflectionEvent.workspace_id == workspace_id, DeflectionEvent.event == kind
        ).group_by(DeflectionEvent.session_id).having(func.count() > 0)))

    with Session(engine) as s:
        shown = sessions_with(s, "shown")
        clicked = sessions_with(s, "clicked") & shown
        submitted = sessions_with(s, "submitted")
    return Deflection(len(shown), len(clicked - submitted))


routes = [
    Route("/api/public/kb/search", search, methods=["GET"]),
    Route("/api/public/kb/events", event, methods=["POST"]),
    Route("/portal/{slug}/kb/{article_id}", article_page, methods=["GET"]),
]
