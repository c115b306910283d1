"""The outbox against a real SMTP relay on loopback: retries on 4xx and outages, stops on 5xx."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller

from gateway.config import Relay
from gateway.intake import Person, TicketRequest
from gateway.outbound.outbox import OutboxWorker, backoff
from gateway.outbound.transport import SentDirectory, SmtpRelay
from tests.conftest import free_port


class FlakyRelay:
    """Answers the first `refuse` deliveries with `code`, then accepts."""

    def __init__(self, refuse: int, code: str) -> None:
        self.refuse = refuse
        self.code = code
        self.accepted: list[bytes] = []
        self.attempts = 0

    async def handle_DATA(self, server, session, envelope):
        self.attempts += 1
        if self.attempts <= self.refuse:
            return self.code
        self.accepted.append(envelope.original_content or envelope.content)
        return "250 OK"


def _queue_one(services) -> int:
    ws = services.store.workspace_by_slug("acme")
    with services.store.tx() as s:
        services.intake.open_ticket(s, TicketRequest(
            workspace_id=ws.id, customer=Person("Jane", "jane@customer.test"),
            subject="Printer", description="Broken"))
    return len(services.store.outbox())


async def _drain(worker: OutboxWorker, seconds: float) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        await worker.deliver_due()
        await asyncio.sleep(0.05)


@contextmanager
def relay_on(port: int, relay: FlakyRelay) -> Iterator[FlakyRelay]:
    """A real aiosmtpd relay on loopback for the length of the block."""
    controller = Controller(relay, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield relay
    finally:
        controller.stop()


def _worker(services, port: int, **kw) -> OutboxWorker:
    return OutboxWorker(services.store, SmtpRelay(Relay("127.0.0.1", port), timeout=5),
                        backoff_base=0.1, **kw)


def test_temporary_refusals_delay_but_deliver_each_mail_once(services):
    queued = _queue_one(services)  # the confirmation and the agent's notification
    relay = FlakyRelay(refuse=2, code="451 4.3.0 Try again later")
    port = free_port()
    with relay_on(port, relay):
        asyncio.run(_drain(_worker(services, port), 3.0))
    rows = services.store.outbox()
    assert [r.state for r in rows] == ["sent"] * queued
    assert len(relay.accepted) == queued  # exactly once each
    assert sum(r.attempts for r in rows) == queued + 2
    ids = {email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"]
           for raw in relay.accepted}
    assert ids == {f"<{r.message_id}>" for r in rows}


def test_permanent_refusal_is_recorded_and_not_retried(services):
    queued = _queue_one(services)
    relay = FlakyRelay(refuse=100, code="550 5.1.1 No such user")
    port = free_port()
    with relay_on(port, relay):
        asyncio.run(_drain(_worker(services, port), 1.0))
    rows = services.store.outbox()
    assert [r.state for r in rows] == ["failed"] * queued
    assert all(r.attempts == 1 and "550" in r.last_error for r in rows)
    assert relay.attempts == queued


def test_a_relay_that_is_down_delays_mail_without_losing_it(services):
    queued = _queue_one(services)
    port = free_port()  # nothing listens here yet
    worker = _worker(services, port)
    asyncio.run(_drain(worker, 0.5))
    rows = services.store.outbox()
    assert all(r.state == "queued" and r.attempts >= 1 and r.last_error for r in rows)
    relay = FlakyRelay(refuse=0, code="")
    with relay_on(port, relay):
        asyncio.run(_drain(worker, 3.0))
    assert [r.state for r in services.store.outbox()] == ["sent"] * queued
    assert len(relay.accepted) == queued


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_without_a_relay_mail_is_written_to_the_sent_folder(services, tmp_path):
    queued = _queue_one(services)
    worker = OutboxWorker(services.store, SentDirectory(tmp_path / "sent"))
    asyncio.run(_drain(worker, 0.3))
    files = sorted((tmp_path / "sent").glob("*.eml"))
    assert len(files) == queued
    subjects = {str(email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
                    ["Subject"]) for f in files}
    assert "[TKT-0001] Printer" in subjects


def test_backoff_doubles_and_is_capped():
    assert [backoff(n).total_seconds() for n in (1, 2, 3)] == [5, 10, 20]
    assert backoff(30) == timedelta(minutes=10)
