"""One log line per HTTP request, a request id on every line logged while it runs, and the
request's time in the latency histogram (/metrics): one middleware, one clock read.

The id is the caller's `X-Request-ID` when it looks like one (a proxy's, so its logs and ours
join up), else a new one; it is echoed in the response. The line names the route's path
template, never the raw path or query: those carry ticket references and tracking tokens.
"""

from __future__ import annotations

import logging
import os
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import logs
from portal.health import Metrics

log = logging.getLogger("workestra.http")
HEADER = b"x-request-id"
_SANE = re.compile(rb"^[A-Za-z0-9._:-]{8,64}$")


def request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == HEADER and _SANE.match(value):
            return value.decode("ascii")
    return os.urandom(8).hex()  # as random as uuid4's first 16 hex digits, and quicker


class RequestLog:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)
        status = 500  # what the client sees if the app raises before answering
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (HEADER, rid.encode())]
            await send(message)

        with logs.bound(request_id=rid):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                route = getattr(scope.get("route"), "path", "unmatched")
                seconds = time.perf_counter() - start
                self.metrics.timer(scope["method"], route).observe(seconds)
                ms = round(seconds * 1000, 1)
                log.info("%s %s %s %.1f ms", scope["method"], route, status, ms,
                         extra={"fields": {"method": scope["method"], "route": route,
                                           "status": status, "ms": ms}})
