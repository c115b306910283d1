"""/healthz, /readyz and /metrics, as an orchestrator and Prometheus read them."""

from __future__ import annotations

import asyncio
import re

import httpx
import psycopg

from gateway.demo import seed_demo
from gateway.services import build_services
from portal.app import create_app
from tests.conftest import PG_URL, customer_mail, make_settings
from tests.test_pipeline import deliver


def get(app, path: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await c.get(path)
    return asyncio.run(go())


def metric(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+]+)$", text, re.MULTILINE)
    assert m, (name, labels, text)
    return float(m.group(1))


def test_metrics_count_mail_tickets_the_outbox_and_requests(services):
    app = create_app(services)
    deliver(services, customer_mail("Printer is on fire", "Room 4."))
    deliver(services, customer_mail("Out of office", "Away.", Auto_Submitted="auto-replied"))
    assert get(app, "/healthz").text == "ok"
    assert get(app, "/readyz").status_code == 200
    get(app, "/portal/acme/tickets/TKT-0001?t=secret-token")
    text = get(app, "/metrics").text
    assert metric(text, "workestra_inbound_messages_total", '{outcome="new_ticket"}') == 1
    assert metric(text, "workestra_inbound_messages_total", '{outcome="ignored"}') == 1
    assert metric(text, "workestra_tickets_created_total") == 1
    assert metric(text, "workestra_outbox_depth") == 2  # confirmation and the agent's notice
    assert metric(text, "workestra_inbound_pending") == 0
    route = 'route="/portal/{slug}/tickets/{ref}"'
    assert re.search(rf'workestra_http_request_seconds_count{{method="GET",{route}}} 1', text)
    assert "secret-token" not in text  # paths are labelled by template, never by URL


def test_readyz_fails_when_the_database_is_gone(tmp_path, postgres_url):
    svc = build_services(make_settings(tmp_path, postgres_url))
    try:
        seed_demo(svc.store)
        app = create_app(svc)
        assert get(app, "/readyz").status_code == 200
        schema = re.search(r"search_path%3D(\w+)", postgres_url).group(1)
        svc.engine.dispose()
        with psycopg.connect(PG_URL, autocommit=True) as conn:  # the data goes away
            conn.execute(f'ALTER SCHEMA "{schema}" RENAME TO "{schema}_gone"')
        try:
            r = get(app, "/readyz")
            assert r.status_code == 503 and "database unavailable" in r.text
            assert get(app, "/healthz").status_code == 200  # the process itself is fine
        finally:
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f'ALTER SCHEMA "{schema}_gone" RENAME TO "{schema}"')
    finally:
        svc.close()
