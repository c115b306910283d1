"""Submission limits per IP: a friendly 429 page, counted in memory or shared in Redis."""

from __future__ import annotations

import uuid

import pytest
from starlette.testclient import TestClient

from portal.app import create_app
from tests.conftest import need_service
from tests.test_portal_common import submit

REDIS = "redis://127.0.0.1:6379"


def _redis_env(monkeypatch) -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS, socket_connect_timeout=2).ping()
    except redis.RedisError as e:
        need_service(f"Redis at {REDIS} not reachable: {e}")
    prefix = f"wk-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("WORKESTRA_REDIS_URL", REDIS)
    monkeypatch.setenv("WORKESTRA_REDIS_PREFIX", prefix)
    return prefix


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_eleventh_submission_in_an_hour_gets_a_friendly_429(services, monkeypatch, store):
    if store == "redis":
        _redis_env(monkeypatch)
    c = TestClient(create_app(services), base_url="http://127.0.0.1:8000")
    codes = [submit(c, {"subject": f"Request {i}"}).status_code for i in range(11)]
    assert codes == [200] * 10 + [429]
    last = submit(c)
    assert last.status_code == 429 and "Please wait a little" in last.text
    assert "Acme Support" in last.text and last.headers["retry-after"]


def test_redis_count_is_shared_between_processes(services, monkeypatch):
    """Two apps (as two `serve` processes) on one Redis prefix share one count."""
    _redis_env(monkeypatch)
    monkeypatch.setenv("WORKESTRA_LIMIT_SUBMIT", "3/hour")
    a = TestClient(create_app(services), base_url="http://127.0.0.1:8000")
    b = TestClient(create_app(services), base_url="http://127.0.0.1:8000")
    codes = [submit(x).status_code for x in (a, b, a, b)]
    assert codes == [200, 200, 200, 429]


def test_forwarded_for_counts_only_from_a_trusted_proxy(services, monkeypatch):
    monkeypatch.setenv("WORKESTRA_LIMIT_SUBMIT", "1/hour")
    c = TestClient(create_app(services), base_url="http://127.0.0.1:8000")
    # Untrusted peer: X-Forwarded-For is ignored, so a new header does not buy a new count.
    c.headers["X-Forwarded-For"] = "198.51.100.1"
    assert submit(c).status_code == 200
    c.headers["X-Forwarded-For"] = "198.51.100.2"
    assert submit(c).status_code == 429


def test_client_address_from_forwarded_for_only_behind_a_trusted_proxy():
    from starlette.requests import Request

    from portal.ratelimit import Limits

    def ip(peer: str, forwarded: str) -> str:
        scope = {"type": "http", "client": (peer, 5000), "method": "GET", "path": "/",
                 "headers": [(b"x-forwarded-for", forwarded.encode())], "query_string": b""}
        return Limits({"WORKESTRA_TRUSTED_PROXIES": "10.0.0.0/8"}).client_ip(Request(scope))

    assert ip("10.0.0.5", "198.51.100.7, 10.0.0.9") == "198.51.100.7"
    assert ip("203.0.113.9", "198.51.100.7") == "203.0.113.9"  # anyone can write the header
    assert ip("10.0.0.5", "1.2.3.4, 198.51.100.7") == "198.51.100.7"  # right-most untrusted


def test_memory_counts_stay_exact_while_expired_entries_are_swept_seldom(monkeypatch):
    """limits' own storage walks every key 10 ms after each hit, which with many client
    addresses costs a core; ours sweeps every few seconds, and a limit still holds exactly."""
    import threading
    import time

    from portal.ratelimit import Limits, SweptMemoryStorage

    sweeps = []
    expire = SweptMemoryStorage._MemoryStorage__expire_events
    monkeypatch.setattr(SweptMemoryStorage, "_MemoryStorage__expire_events",
                        lambda self: (sweeps.append(1), expire(self)))
    limits = Limits(env={"WORKESTRA_LIMIT_SUBMIT": "3/hour"})
    storage = limits._limiter.storage
    assert isinstance(storage, SweptMemoryStorage)
    deadline, i = time.monotonic() + 0.3, 0
    while time.monotonic() < deadline:  # many addresses, each well inside its limit
        assert limits._hit("submit", f"10.0.{i // 256}.{i % 256}")
        i += 1
        time.sleep(0.002)  # the library's own storage sweeps 10 ms after a hit: 20-30 times
    assert [limits._hit("submit", "192.0.2.7") for _ in range(4)] == [True] * 3 + [False]
    assert len(sweeps) <= 1
    assert storage.timer.daemon and isinstance(storage.timer, threading.Timer)
