"""The deployment's shape as processes: two `serve --no-worker` and one `worker` on one
PostgreSQL and one Redis. Mail through either front end becomes exactly one ticket, the worker
answers it, and the portal's rate limit is one count across both front ends."""

from __future__ import annotations

import threading
import uuid

import httpx
from sqlmodel import select

from storage.models import InboundMessage, Ticket
from tests.conftest import customer_mail, need_service, start_gateway, start_worker, stop_gateway
from tests.test_portal_common import submit

REDIS = "redis://127.0.0.1:6379"


def redis_env() -> dict[str, str]:
    import redis

    try:
        redis.Redis.from_url(REDIS, socket_connect_timeout=2).ping()
    except Exception as e:
        need_service(f"Redis at {REDIS} not reachable: {e}")
    return {"WORKESTRA_REDIS_URL": REDIS, "WORKESTRA_REDIS_PREFIX": f"wk-{uuid.uuid4().hex}"}


def test_two_front_ends_and_a_worker_share_one_database_and_one_redis(tmp_path, postgres_url,
                                                                     sink):
    env = redis_env()
    a = start_gateway(tmp_path, postgres_url, sink.port, env, args=("--no-worker",))
    worker = start_worker(a)  # it starts up while the second front end does
    b = None
    try:
        b = start_gateway(tmp_path, postgres_url, sink.port, env, args=("--no-worker",))

        def stream(front, start: int) -> None:
            for i in range(start, start + 10):
                front.send(customer_mail(f"Request {i}", "Hello.", sender=f"c{i}@customer.test"),
                           f"c{i}@customer.test", ["support@acme.test"])

        threads = [threading.Thread(target=stream, args=(f, k * 10)) for k, f in
                   enumerate((a, b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i in range(20):  # the worker answered every one, through the outbox
            sink.wait_for(lambda m, i=i: f"c{i}@customer.test" in str(m["To"]), timeout=60)
        svc = a.services()
        try:
            with svc.store.read() as s:
                rows = list(s.exec(select(InboundMessage)))
                tickets = list(s.exec(select(Ticket)))
        finally:
            svc.close()
        assert len(rows) == 20 and all(r.outcome == "new_ticket" for r in rows)
        assert sorted(t.subject for t in tickets) == sorted(f"Request {i}" for i in range(20))
        assert sorted(t.number for t in tickets) == list(range(1, 21))  # no number twice

        with httpx.Client(base_url=a.base_url) as ca, httpx.Client(base_url=b.base_url) as cb:
            codes = [submit(c, {"subject": f"Form {n}"}).status_code
                     for n, c in enumerate([ca, cb] * 5)]
            assert all(code < 400 for code in codes), codes
            assert submit(cb).status_code == 429  # the 11th, wherever it lands
            assert submit(ca).status_code == 429
    finally:
        for proc in (worker, *(r.proc for r in (b, a) if r)):  # all wind down at once
            proc.terminate()
        worker.wait(15)
        if b:
            stop_gateway(b)
        stop_gateway(a)
