"""What every console page shares: the signed session cookie, the CSRF check, rendering.

`console_page` wraps each handler: no valid session, no handler (pages redirect to the login,
JSON answers 401); every POST must carry the CSRF field (portal/csrf.py) or gets 403 before
the handler runs. Handlers receive an `Agent` context whose workspace scopes every lookup.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from itsdangerous import BadSignature, URLSafeTimedSerializer
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy import func
from sqlmodel import select
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from gateway.agent_actions import ActionError, AgentActions
from gateway.outbound.render import Brand
from gateway.services import Services
from portal import csrf
from portal.api_auth import ApiError
from portal.api_files import MAX_FILE_SIZE, MAX_FILES
from portal.pages import CSP as PORTAL_CSP
from storage.models import Agent, Notification, Workspace

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
SESSION_COOKIE = "wk_console"
SESSION_MAX_AGE = 12 * 3600  # a working day; then the agent logs in again
CSP = PORTAL_CSP + "; frame-ancestors 'none'"
MAX_FORM = MAX_FILES * MAX_FILE_SIZE + 1024 * 1024


def _when(value: Any) -> str:
    """A timestamp as agents read it: UTC, to the minute."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return ""
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024 or unit == "MB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True))
env.filters["when"] = _when
env.filters["size"] = _size


@dataclass
class Ctx:
    """The logged-in agent, their workspace, and the request's parsed form (POST only)."""

    agent: Agent
    workspace: Workspace
    unread: int = 0
    form: FormData | None = field(default=None)

    def text(self, name: str) -> str:
        value = self.form.get(name) if self.form is not None else None
        return value if isinstance(value, str) else ""


def services_of(request: Request) -> Services:
    return request.app.state.services


def actions(request: Request) -> AgentActions:
    svc = services_of(request)
    return AgentActions(svc.store, svc.blobs, svc.mailer)


def _secure(request: Request) -> bool:
    return services_of(request).settings.public_url.lower().startswith("https://")


# -- the session cookie ---------------------------------------------------------------------------

def _serializer(request: Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(services_of(request).settings.secret_key, salt="console-session")


def _fingerprint(agent: Agent) -> str:
    """Changes when the password does, so a new password ends every older session."""
    return hashlib.sha256((agent.password_hash or "").encode()).hexdigest()[:16]


def start_session(request: Request, response: Response, agent: Agent) -> None:
    value = _serializer(request).dumps({"a": agent.id, "p": _fingerprint(agent)})
    response.set_cookie(SESSION_COOKIE, value, max_age=SESSION_MAX_AGE, path="/console",
                        httponly=True, samesite="lax", secure=_secure(request))


def end_session(request: Request, response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/console", httponly=True, samesite="lax",
                           secure=_secure(request))


def unread_count(s, agent: Agent) -> int:
    return s.exec(select(func.count()).select_from(Notification).where(
        Notification.workspace_id == agent.workspace_id, Notification.agent_id == agent.id,
        Notification.read == False)).one()  # noqa: E712


def session_agent(request: Request) -> Ctx | None:
    """The agent the session cookie names, if it is valid, fresh, and their password unchanged."""
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    try:
        data = _serializer(request).loads(raw, max_age=SESSION_MAX_AGE)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("a"), int):
        return None
    with services_of(request).store.read() as s:
        agent = s.get(Agent, data["a"])
        if agent is None or not agent.password_hash or data.get("p") != _fingerprint(agent):
            return None
        ws = s.get(Workspace, agent.workspace_id)
        if ws is None:
            return None
        return Ctx(agent, ws, unread_count(s, agent))


# -- rendering ------------------------------------------------------------------------------------

def render(request: Request, template: str, ctx: Ctx | None, *, status: int = 200,
           **context: Any) -> HTMLResponse:
    """A console page with its CSRF field, the agent's badge count, and the console headers."""
    svc = services_of(request)
    field_value, fresh = csrf.token(request, svc.settings.secret_key)
    brand = (Brand.of(ctx.workspace, svc.settings.public_url.rstrip("/")) if ctx
             else Brand("Workestra console", "#2563eb", None, None))
    csrf_input = Markup('<input type="hidden" name="{}" value="{}">').format(csrf.FIELD,
                                                                             field_value)
    html = env.get_template(template).render(
        request=request, ctx=ctx, brand=brand, csrf_input=csrf_input,
        public_url=svc.settings.public_url.rstrip("/"), **context)
    response = HTMLResponse(html, status_code=status)
    csrf.set_cookie(response, fresh, secure=_secure(request))
    secure_headers(response)
    return response


def secure_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"  # agents' data stays out of shared caches
    return response


def redirect(url: str) -> Response:
    return secure_headers(RedirectResponse(url, status_code=303))


def problem(request: Request, ctx: Ctx | None, status: int, message: str) -> HTMLResponse:
    return render(request, "console/problem.html", ctx, status=status, message=message,
                  back=_same_site_back(request))


def _same_site_back(request: Request) -> str:
    """Where "Back" goes: the referring console page when there is one."""
    ref = request.headers.get("referer", "")
    base = str(request.base_url).rstrip("/")
    path = ref[len(base):] if ref.startswith(base) else ""
    return path if path.startswith("/console") else "/console/"


class NotFound(Exception):
    """Nothing by that name in the agent's workspace (another workspace's rows included)."""


# -- the wrapper ----------------------------------------------------------------------------------

Handler = Callable[[Request, Ctx], Awaitable[Response]]


def console_page(handler: Handler | None = None, *, json: bool = False) -> Any:
    """Require a session (and on POST a valid CSRF field); turn refusals into pages."""

    def wrap(fn: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(fn)
        async def endpoint(request: Request) -> Response:
            ctx = await asyncio.to_thread(session_agent, request)
            if ctx is None:
                if json:
                    return JSONResponse({"error": "log in first"}, status_code=401)
                target = quote(request.url.path) if request.method == "GET" else ""
                return redirect("/console/login" + (f"?next={target}" if target else ""))
            try:
                if request.method == "POST":
                    refused = await _read_form(request, ctx)
                    if refused is not None:
                        return refused
                return await fn(request, ctx)
            except NotFound:
                return problem(request, ctx, 404, "There is nothing at this address "
                                                  "in your workspace.")
            except ApiError as e:
                return problem(request, ctx, e.status, e.message)
            except ActionError as e:
                return problem(request, ctx, 422, str(e))
            finally:
                if ctx.form is not None:
                    await ctx.form.close()
        return endpoint

    return wrap(handler) if handler is not None else wrap


async def _read_form(request: Request, ctx: Ctx) -> Response | None:
    """Parse the POSTed form into ctx.form; a refusal page when it is too big or lacks CSRF."""
    if int(request.headers.get("content-length") or 0) > MAX_FORM:
        return problem(request, ctx, 413, f"At most {MAX_FILES} files of "
                                          f"{MAX_FILE_SIZE // 2**20} MB each.")
    try:
        ctx.form = await request.form(max_files=MAX_FILES, max_fields=50)
    except HTTPException as e:
        return problem(request, ctx, 400, f"The form cannot be read: {e.detail}")
    if not csrf.valid(request, services_of(request).settings.secret_key,
                      ctx.text(csrf.FIELD) or None):
        return problem(request, ctx, 403, "This form has expired or did not come from the "
                                          "console. Reload the page and try again.")
    return None
