"""Per-IP rate limits for the public endpoints, counted with `limits`.

In memory by default (one process); in Redis when WORKESTRA_REDIS_URL is set, so every `serve`
process behind a load balancer shares one count. When Redis cannot be reached the portal keeps
answering: each process counts on its own in memory (the same limits, so N processes let up to
N times the limit through), logs one WARNING a minute at most while that lasts, tries Redis
again every few seconds and goes back to it as soon as it answers. Counts made during the
outage stay in the process; Redis resumes with what it held.

The client's address is the socket peer, unless that peer is a proxy listed in
WORKESTRA_TRUSTED_PROXIES: only then is X-Forwarded-For believed (its right-most address not
itself a trusted proxy). The settings are checked at start by gateway/config.py.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from limits import RateLimitItem
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.requests import Request

from gateway.config import parse_redis_url, parse_trusted_proxies, portal_limits

log = logging.getLogger("workestra.portal")

REDIS_TIMEOUT = 1.0  # seconds to connect or answer before a request counts in memory instead
RETRY_REDIS_EVERY = 5.0  # seconds counted in memory before Redis is tried again
WARN_EVERY = 60.0  # seconds between warnings while Redis stays away

T = TypeVar("T")


class SweptMemoryStorage(MemoryStorage):
    """limits' in-memory storage, with expired entries swept every few seconds, not 10 ms
    after every hit.

    Each of its sweeps walks every key. With 10,000 client addresses inside the window (an
    hour of submissions from many customers) its sweeps took 38% of a core, with 50,000 79%,
    in the process that also answers SMTP; an attacker with an IPv6 /64 adds addresses at will.
    The counts stay exact either way: a moving window only looks at entries inside it, and
    the sweep only frees their memory."""

    SWEEP_EVERY = 5.0  # seconds

    def _MemoryStorage__schedule_expiry(self) -> None:  # the library's private hook
        if not self.timer.is_alive():
            self.timer = threading.Timer(self.SWEEP_EVERY, self._MemoryStorage__expire_events)
            self.timer.daemon = True  # a pending sweep must not hold up shutdown
            self.timer.start()


class Limits:
    """One limiter for the portal. `test(name, ip)` says whether that IP may go on, `hit`
    counts one (and is False once over the limit), `retry_after` is the seconds until the
    next one is let through."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        redis_url = env.get("WORKESTRA_REDIS_URL", "").strip()
        self.shared = bool(redis_url)
        self._local = MovingWindowRateLimiter(SweptMemoryStorage())
        self._limiter = self._local
        if redis_url:
            self._limiter = MovingWindowRateLimiter(RedisStorage(
                parse_redis_url(redis_url), key_prefix=env.get(
                    "WORKESTRA_REDIS_PREFIX", "workestra"), wrap_exceptions=True,
                socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT))
        self._items: dict[str, RateLimitItem] = portal_limits(env)
        self._proxies = parse_trusted_proxies(env.get("WORKESTRA_TRUSTED_PROXIES", ""))
        self._lock = threading.Lock()
        self._away_until = 0.0  # monotonic time before which Redis is not tried again
        self._away = False
        self._warned = -math.inf

    def describe(self, name: str) -> str:
        item = self._items[name]
        unit = item.GRANULARITY.name
        per = f"{item.multiples} {unit}s" if item.multiples > 1 else unit
        return f"{item.amount} per {per}"

    def _counted(self, op: Callable[[MovingWindowRateLimiter], T]) -> T:
        """op on Redis, or on this process's memory while Redis cannot be reached."""
        if self._limiter is self._local or time.monotonic() < self._away_until:
            return op(self._local)
        try:
            result = op(self._limiter)
        except StorageError as e:
            self._gone(e.storage_error)
            return op(self._local)
        if self._away:
            with self._lock:
                if self._away:
                    self._away = False
                    log.info("rate limits: Redis answers again; counting there")
        return result

    def _gone(self, error: Exception) -> None:
        now = time.monotonic()
        with self._lock:
            self._away = True
            self._away_until = now + RETRY_REDIS_EVERY
            if now - self._warned >= WARN_EVERY:
                self._warned = now
                log.warning("rate limits: Redis not reachable (%s: %s); each process counts "
                            "in memory until it answers", type(error).__name__, error)

    def _hit(self, name: str, key: str) -> bool:
        return self._counted(lambda lim: lim.hit(self._items[name], name, key))

    def _test(self, name: str, key: str) -> bool:
        return self._counted(lambda lim: lim.test(self._items[name], name, key))

    def _retry_after(self, name: str, key: str) -> int:
        stats = self._counted(lambda lim: lim.get_window_stats(self._items[name], name, key))
        if stats.remaining > 0:
            return 0
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def _run(self, fn: Callable[[str, str], T], name: str, key: str) -> T:
        if self.shared:  # Redis calls leave the event loop free
            return await asyncio.to_thread(fn, name, key)
        return fn(name, key)

    async def hit(self, name: str, key: str) -> bool:
        """Counts one request; False once the IP is over the limit."""
        return await self._run(self._hit, name, key)

    async def test(self, name: str, key: str) -> bool:
        """Whether one more would be let through, counting nothing."""
        return await self._run(self._test, name, key)

    async def retry_after(self, name: str, key: str) -> int:
        """Seconds until the IP may send again (0 if it may now)."""
        return await self._run(self._retry_after, name, key)

    def _trusted(self, host: str) -> bool:
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(addr in net for net in self._proxies)

    def client_ip(self, request: Request) -> str:
        peer = request.client.host if request.client else "unknown"
        if not self._proxies or not self._trusted(peer):
            return peer
        hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",")]
        for hop in reversed([h for h in hops if h]):
            if not self._trusted(hop):
                return hop
        return peer


def limits_of(request: Request) -> Limits:
    """The app's limiter, made on first use from the environment."""
    state = request.app.state
    found = getattr(state, "portal_limits", None)
    if found is None:
        found = state.portal_limits = Limits()
    return found
