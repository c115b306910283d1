"""Submission limits per IP: a friendly 429 page, counted in memory or shared in Redis."""

from __future__ import annotations

import logging
import shutil
import subprocess
import uuid

import pytest
from starlette.testclient import TestClient

from portal.app import create_app
from tests.conftest import free_port, need_service, wait_port
from tests.test_portal_common import PNG, csrf_of, submit

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


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_only_submissions_that_opened_a_ticket_use_up_the_limit(services, monkeypatch, store):
    """'3 ticket submissions per hour': forms sent back for a mistake or an expired token do
    not count, so the customer who corrects them still gets three tickets."""
    if store == "redis":
        _redis_env(monkeypatch)
    monkeypatch.setenv("WORKESTRA_LIMIT_SUBMIT", "3/hour")
    c = TestClient(create_app(services), base_url="http://127.0.0.1:8000")
    refused = [submit(c, {"name": ""}).status_code for _ in range(3)]
    refused += [submit(c, {"csrf_token": "stale"}).status_code for _ in range(3)]
    assert refused == [400] * 3 + [403] * 3
    assert [submit(c).status_code for _ in range(4)] == [200, 200, 200, 429]


def test_the_honeypot_is_not_counted(services, monkeypatch):
    monkeypatch.setenv("WORKESTRA_LIMIT_SUBMIT", "1/hour")
    c = TestClient(create_app(services), base_url="http://127.0.0.1:8000")
    assert [submit(c, {"website": "spam.example"}).status_code for _ in range(3)] == [200] * 3
    assert [submit(c).status_code for _ in range(2)] == [200, 429]


def test_a_refused_submission_comes_back_with_everything_typed(services, monkeypatch):
    monkeypatch.setenv("WORKESTRA_LIMIT_SUBMIT", "1/hour")
    c = TestClient(create_app(services), base_url="http://127.0.0.1:8000")
    assert submit(c).status_code == 200
    typed = {"name": "Zoë Tester", "email": "zoe@customer.test", "type": "Feature Request",
             "subject": "Dark mode <please>", "description": "Line one\nline & two"}
    r = submit(c, typed)
    assert r.status_code == 429
    assert 3500 <= int(r.headers["retry-after"]) <= 3600  # when the one ticket leaves the hour
    assert 'id="submit-form"' in r.text and csrf_of(r.text)
    assert 'value="Zoë Tester"' in r.text and 'value="zoe@customer.test"' in r.text
    assert 'value="Dark mode &lt;please&gt;"' in r.text and "Line one\nline &amp; two" in r.text
    assert "<option selected>Feature Request</option>" in r.text
    assert "Please wait a little" in r.text and "in about 60 minutes" in r.text
    assert "1 per hour" in r.text and "could not be kept" not in r.text
    with_file = submit(c, typed, files=[("attachments", ("shot.png", PNG, "image/png"))])
    assert with_file.status_code == 429 and "value=\"Zoë Tester\"" in with_file.text
    assert "The files you chose could not be kept" in with_file.text
    assert with_file.headers["retry-after"]


def test_unreachable_redis_fails_open_to_a_count_in_memory(services, monkeypatch, caplog):
    """Nothing listens on the port: tickets are still taken, the limit still holds (in this
    process), and the log says so once, not once a request."""
    monkeypatch.setenv("WORKESTRA_REDIS_URL", f"redis://127.0.0.1:{free_port()}")
    monkeypatch.setenv("WORKESTRA_LIMIT_SUBMIT", "2/hour")
    c = TestClient(create_app(services), base_url="http://127.0.0.1:8000")
    with caplog.at_level(logging.INFO, logger="workestra.portal"):
        assert [submit(c).status_code for _ in range(4)] == [200, 200, 429, 429]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Redis not reachable" in warnings[0].getMessage()


def test_the_count_goes_back_to_redis_when_it_answers_again(monkeypatch, caplog, tmp_path):
    """Redis down, up, down again: memory, Redis, memory; one warning a minute at most."""
    import redis

    from portal import ratelimit
    from portal.ratelimit import Limits

    server = shutil.which("redis-server")
    if server is None:
        need_service("redis-server not installed")
    monkeypatch.setattr(ratelimit, "RETRY_REDIS_EVERY", 0.0)  # try Redis on every request
    port, prefix = free_port(), f"wk-test-{uuid.uuid4().hex}"
    limits = Limits({"WORKESTRA_REDIS_URL": f"redis://127.0.0.1:{port}",
                     "WORKESTRA_REDIS_PREFIX": prefix, "WORKESTRA_LIMIT_SUBMIT": "5/hour"})
    with caplog.at_level(logging.INFO, logger="workestra.portal"):
        assert limits._test("submit", "192.0.2.1") and limits._hit("submit", "192.0.2.1")
        proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1",
                                 "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                                stdout=subprocess.DEVNULL)
        try:
            wait_port(port)
            assert [limits._hit("submit", "192.0.2.1") for _ in range(5)] == [True] * 5
            assert not limits._test("submit", "192.0.2.1")  # five in Redis: the limit
            assert redis.Redis(port=port).keys(f"{prefix}*")
        finally:
            proc.terminate()
            proc.wait(10)
        assert [limits._hit("submit", "192.0.2.1") for _ in range(5)] == [True] * 4 + [False]
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [m for m in messages if m[0] == "WARNING"] == [messages[0]]  # not again in a minute
    assert "Redis not reachable" in messages[0][1]
    assert ("INFO", "rate limits: Redis answers again; counting there") in messages


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
