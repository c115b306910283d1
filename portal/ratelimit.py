"""Per-IP rate limits for the public endpoints, counted with `limits`.

In memory by default (one process); in Redis when WORKESTRA_REDIS_URL is set, so every `serve`
process behind a load balancer shares one count. The client's address is the socket peer,
unless that peer is a proxy listed in WORKESTRA_TRUSTED_PROXIES: only then is
X-Forwarded-For believed (its right-most address not itself a trusted proxy).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import threading
from collections.abc import Mapping

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter
from starlette.requests import Request

# name -> (default, environment variable that overrides it, e.g. "20/hour")
DEFAULTS = {
    "submit": ("10/hour", "WORKESTRA_LIMIT_SUBMIT"),
    "upload": ("5/10 minutes", "WORKESTRA_LIMIT_UPLOAD"),
    "link": ("5/hour", "WORKESTRA_LIMIT_LINK"),
    "reply": ("30/hour", "WORKESTRA_LIMIT_REPLY"),
    "feedback": ("20/hour", "WORKESTRA_LIMIT_FEEDBACK"),
    "search": ("600/minute", "WORKESTRA_LIMIT_SEARCH"),
}


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
    """One limiter for the portal; `hit(name, ip)` is False once that IP is over the limit."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        redis_url = env.get("WORKESTRA_REDIS_URL", "").strip()
        self.shared = bool(redis_url)
        storage: Storage = (RedisStorage(redis_url, key_prefix=env.get(
            "WORKESTRA_REDIS_PREFIX", "workestra")) if redis_url else SweptMemoryStorage())
        self._limiter = MovingWindowRateLimiter(storage)
        self._items: dict[str, RateLimitItem] = {
            name: parse(env.get(var) or default) for name, (default, var) in DEFAULTS.items()}
        self._proxies = [ipaddress.ip_network(p.strip(), strict=False) for p in
                         env.get("WORKESTRA_TRUSTED_PROXIES", "").split(",") if p.strip()]

    def describe(self, name: str) -> str:
        item = self._items[name]
        unit = item.GRANULARITY.name
        per = f"{item.multiples} {unit}s" if item.multiples > 1 else unit
        return f"{item.amount} per {per}"

    def _hit(self, name: str, key: str) -> bool:
        return self._limiter.hit(self._items[name], name, key)

    async def hit(self, name: str, key: str) -> bool:
        """Counts one request; Redis calls leave the event loop free."""
        if self.shared:
            return await asyncio.to_thread(self._hit, name, key)
        return self._hit(name, key)

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
