"""Console login and logout: email + password (`workestra agents password`), a signed cookie.

The workspace follows from the agent's email. One address may be an agent in several
workspaces; the password decides which (the first, by agent id, whose password matches).
Failed logins are limited per email and client address, in memory: 5 in 10 minutes, then the
form refuses until the oldest failure ages out. One process is the embedded default; several
processes would each keep their own count (Redis would share it).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict, deque

from sqlmodel import select
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.credentials import hash_password, verify_password
from portal import csrf
from portal.console.common import (
    Ctx,
    console_page,
    end_session,
    redirect,
    render,
    services_of,
    start_session,
)
from storage.models import Agent

MAX_FAILURES = 5
WINDOW = 600.0  # seconds
_DUMMY_HASH = hash_password("not-anyones-password")  # unknown emails cost the same time


class LoginLimiter:
    """Failed attempts per (email, client address) within the last WINDOW seconds."""

    def __init__(self, limit: int = MAX_FAILURES, window: float = WINDOW) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures[key]
        while times and now - times[0] >= self.window:
            times.popleft()
        return times

    def wait_seconds(self, key: tuple[str, str]) -> int:
        """0 when another attempt is allowed; else how long until it is."""
        now = time.monotonic()
        with self._lock:
            times = self._recent(key, now)
            if len(times) < self.limit:
                return 0
            return max(1, int(self.window - (now - times[0])) + 1)

    def failed(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._recent(key, time.monotonic()).append(time.monotonic())

    def succeeded(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._failures.pop(key, None)


def limiter(request: Request) -> LoginLimiter:
    state = request.app.state
    if getattr(state, "console_login_limiter", None) is None:
        state.console_login_limiter = LoginLimiter()
    return state.console_login_limiter


def _next(value: str | None) -> str:
    """Only a console path: a login link must not bounce the agent to another site."""
    if value and value.startswith("/console") and not value.startswith("//") \
            and "\\" not in value:
        return value
    return "/console/"


def check_password(request: Request, email: str, password: str) -> Agent | None:
    with services_of(request).store.read() as s:
        agents = list(s.exec(select(Agent).where(Agent.email == email).order_by(Agent.id)))
    with_password = [a for a in agents if a.password_hash]
    if not with_password:
        verify_password(password, _DUMMY_HASH)
        return None
    return next((a for a in with_password if verify_password(password, a.password_hash)), None)


async def login(request: Request) -> Response:
    nxt = _next(request.query_params.get("next"))
    if request.method == "GET":
        return render(request, "console/login.html", None, next=nxt, email="")
    try:
        form = await request.form(max_files=0, max_fields=10)
    except HTTPException as e:
        return render(request, "console/login.html", None, status=400, next=nxt, email="",
                      error=f"The form cannot be read: {e.detail}")
    email = str(form.get("email") or "").strip().lower()[:320]
    password = str(form.get("password") or "")
    nxt = _next(str(form.get("next") or ""))
    settings = services_of(request).settings
    if not csrf.valid(request, settings.secret_key, str(form.get(csrf.FIELD) or "") or None):
        return render(request, "console/login.html", None, status=403, next=nxt, email=email,
                      error="The form expired. Please try again.")
    key = (email, request.client.host if request.client else "")
    wait = limiter(request).wait_seconds(key)
    if wait:
        return render(request, "console/login.html", None, status=429, next=nxt, email=email,
                      error=f"Too many failed attempts. Try again in {(wait + 59) // 60} "
                            "minute(s).")
    agent = await asyncio.to_thread(check_password, request, email, password)
    if agent is None:
        limiter(request).failed(key)
        return render(request, "console/login.html", None, status=401, next=nxt, email=email,
                      error="That email and password do not match an agent.")
    limiter(request).succeeded(key)
    response = redirect(nxt)
    start_session(request, response, agent)
    return response


@console_page
async def logout(request: Request, ctx: Ctx) -> Response:
    response = redirect("/console/login")
    end_session(request, response)
    return response


routes = [
    Route("/console/login", login, methods=["GET", "POST"]),
    Route("/console/logout", logout, methods=["POST"]),
]
