"""The agents' API plumbing: Bearer-key authentication, JSON errors, and request bodies.

Every endpoint is wrapped by `agent_api`: no valid key, no handler (401 with a JSON error).
Handlers get the caller's agent and workspace, and look everything up within that workspace
only, so another workspace's rows answer exactly like rows that do not exist (404).
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.agent_actions import ActionError
from gateway.credentials import hash_api_key
from gateway.services import Services
from storage.models import Agent, Workspace

MAX_JSON = 1024 * 1024
MAX_ROW_ID = 2**31 - 1  # the id columns are INTEGER (32 bits on PostgreSQL): none is larger


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Caller:
    agent: Agent
    workspace: Workspace


def error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC (SQLite hands back naive datetimes; they were stored as UTC)."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def not_found(what: str) -> ApiError:
    return ApiError(404, f"no {what} in this workspace")


def row_id(request: Request, what: str) -> int:
    """The path's `{id:int}`. Starlette takes any digits, and a number no integer column can
    hold made the driver raise (a 500); it names no row, so it is a 404 like any other."""
    value = request.path_params["id"]
    if value > MAX_ROW_ID:
        raise not_found(what)
    return value


def _lookup(services: Services, key: str) -> Caller | None:
    with services.store.read() as s:
        agent = s.exec(select(Agent).where(Agent.api_key_hash == hash_api_key(key))).first()
        ws = s.get(Workspace, agent.workspace_id) if agent else None
        return Caller(agent, ws) if agent is not None and ws is not None else None


def services_of(request: Request) -> Services:
    return request.app.state.services


Handler = Callable[[Request, Caller], Awaitable[Response]]


def agent_api(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Authenticate, then run the handler; its ApiError/ActionError become JSON errors."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        caller = None
        if scheme.lower() == "bearer" and key.strip():
            caller = await asyncio.to_thread(_lookup, services_of(request), key.strip())
        if caller is None:
            return error(401, "missing or invalid API key (send Authorization: Bearer KEY)",
                         **{"WWW-Authenticate": 'Bearer realm="workestra"'})
        try:
            return await handler(request, caller)
        except ApiError as e:
            return error(e.status, e.message)
        except ActionError as e:
            return error(422, str(e))

    return endpoint


async def json_object(request: Request) -> dict[str, Any]:
    """The request's JSON object, or a 400 that says what is wrong with it."""
    raw = await request.body()
    if len(raw) > MAX_JSON:
        raise ApiError(413, f"the JSON body is larger than {MAX_JSON} bytes")
    try:
        value = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"the body is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise ApiError(400, "the body must be a JSON object")
    if not _all_storable(value):
        raise ApiError(422, "text cannot contain NUL (\\u0000) or unpaired surrogates")
    return value


def storable(text: str) -> bool:
    """Text every database keeps: PostgreSQL refuses NUL (U+0000) and neither encodes a lone
    surrogate (JSON's "\\ud800"); both made the driver raise, a 500, where a 4xx belongs."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _all_storable(value: Any) -> bool:
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return all(_all_storable(k) and _all_storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_all_storable(v) for v in value)
    return True


def field(data: dict[str, Any], name: str, kind: type | tuple[type, ...], *,
          required: bool = False, nullable: bool = False) -> Any:
    """One field of a JSON object, type-checked (bool is not accepted as a number)."""
    if name not in data:
        if required:
            raise ApiError(422, f"{name!r} is required")
        return None
    value = data[name]
    if value is None and nullable:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds).replace("str", "string")
        raise ApiError(422, f"{name!r} must be a {names}{' or null' if nullable else ''}")
    return value


def unknown_fields(data: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise ApiError(422, f"unknown field(s): {', '.join(extra)}; "
                            f"allowed: {', '.join(sorted(allowed))}")
