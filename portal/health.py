"""Health for orchestrators and Prometheus: /healthz (the process answers), /readyz (the
database answers too), /metrics (mail in by outcome, tickets, the outbox, request latency).

Counts of mail and tickets are read from the database at scrape time, so every process of a
deployment reports the same totals; request latency is this process's own histogram.
"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import func
from sqlmodel import select
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from storage.models import InboundMessage, OutboundMessage, Ticket, Workspace
from storage.store import Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class StoreCollector:
    """Totals from the store, computed when Prometheus scrapes."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self):
        with self.store.read() as s:
            inbound = s.exec(select(InboundMessage.outcome, func.count())
                             .where(InboundMessage.state == "done")
                             .group_by(InboundMessage.outcome)).all()
            pending = s.exec(select(func.count()).select_from(InboundMessage)
                             .where(InboundMessage.state == "received")).one()
            tickets = s.exec(select(func.count()).select_from(Ticket)).one()
            outbox = s.exec(select(OutboundMessage.state, func.count())
                            .group_by(OutboundMessage.state)).all()
        mail = CounterMetricFamily("workestra_inbound_messages", "Mail received, by outcome",
                                   labels=["outcome"])
        for outcome, n in inbound:
            mail.add_metric([outcome or "unknown"], n)
        yield mail
        yield GaugeMetricFamily("workestra_inbound_pending", "Mail spooled, not yet processed",
                                value=pending)
        yield CounterMetricFamily("workestra_tickets_created", "Tickets created", value=tickets)
        states = dict(outbox)
        yield GaugeMetricFamily("workestra_outbox_depth", "Mail waiting to be delivered",
                                value=states.get("queued", 0))
        out = CounterMetricFamily("workestra_outbound_messages", "Mail sent, by final state",
                                  labels=["state"])
        for state in ("sent", "failed", "bounced"):
            out.add_metric([state], states.get(state, 0))
        yield out


class Metrics:
    """This process's registry: the store's totals and the request latency histogram."""

    def __init__(self, store: Store) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(StoreCollector(store))
        self.latency = Histogram("workestra_http_request_seconds", "HTTP request latency",
                                 ["method", "route"], registry=self.registry)
        self._timers: dict[tuple[str, str], Histogram] = {}

    def timer(self, method: str, route: str) -> Histogram:
        """The histogram of one method and route, looked up once: `labels` takes a lock and
        checks its arguments every time. Routes are path templates, so the keys are few."""
        key = (method, route)
        timer = self._timers.get(key)
        if timer is None:
            timer = self._timers[key] = self.latency.labels(method, route)
        return timer


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    store: Store = request.app.state.services.store

    def ping() -> None:  # a real table: a reachable server with the wrong schema is not ready
        with store.read() as s:
            s.exec(select(Workspace.id).limit(1)).first()
    try:
        await asyncio.wait_for(asyncio.to_thread(ping), timeout=5)
    except Exception as e:  # any failure to reach the database means: send no traffic here
        return PlainTextResponse(f"database unavailable: {type(e).__name__}", status_code=503)
    return PlainTextResponse("ready")


async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    body = await asyncio.to_thread(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
