"""The processor lets senders waiting on the spool go first, and never starves for it."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from sqlalchemy import func
from sqlmodel import select

from gateway.inbound.processor import Processor
from gateway.inbound.spool import Spool
from storage.models import InboundMessage, Ticket
from tests.conftest import customer_mail


def spooled(services, count: int) -> list[int]:
    spool = Spool(services.store, services.blobs)
    ids = [spool.accept(customer_mail(f"Request {i}", "x", sender=f"c{i}@customer.test")
                        .as_bytes(), mail_from=f"c{i}@customer.test",
                        rcpt_tos=["support@acme.test"]) for i in range(count)]
    spool.close()
    return ids


def run_until_done(services, processor: Processor, ids: list[int], limit: float) -> float:
    """Seconds until every message is processed; fails past `limit`."""
    async def run() -> float:
        stop = asyncio.Event()
        start = time.monotonic()
        task = asyncio.create_task(processor.run(stop))
        while not all(services.store.inbound(i).state == "done" for i in ids):
            assert time.monotonic() - start < limit, "processing starved"
            await asyncio.sleep(0.02)
        stop.set()
        await task
        return time.monotonic() - start

    return asyncio.run(run())


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_while_senders_wait_processing_takes_small_batches_and_pauses_between(services):
    ids = spooled(services, 8)
    batches: list[tuple[float, float, int]] = []  # (start, end, size)
    real = services.pipeline.process_batch

    def recording(batch: list[int]):
        began = time.monotonic()
        try:
            return real(batch)
        finally:
            batches.append((began, time.monotonic(), len(batch)))

    def senders_waiting() -> bool:  # on the line until three batches are done: any machine speed
        return len(batches) < 3

    services.pipeline.process_batch = recording  # the real pipeline, watched
    processor = Processor(services.pipeline, yield_to=senders_waiting,
                          busy_batch=2, max_yield=5.0, share=0.2)
    start = time.monotonic()
    run_until_done(services, processor, ids, limit=20)
    assert batches[0][0] - start >= 0.15  # it let the senders go first (0.05 s guess x 4)
    during, after = batches[:3], batches[3:]
    assert [size for _, _, size in during] == [2, 2, 2]
    # after each batch in the busy spell it waited about 4 times as long (share 0.2)
    for (began, end, _), (nxt, _, _) in zip(during, during[1:], strict=False):
        assert nxt - end >= 0.8 * 4 * (end - began)
    assert [size for _, _, size in after] == [2]  # senders gone: the rest in one batch at once
    assert sum(n for _, _, n in batches) == 8
    assert [services.store.inbound(i).outcome for i in ids] == ["new_ticket"] * 8


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_under_constant_pressure_processing_keeps_its_share(services):
    """Senders never stop, and no wait may reach max_yield: processing runs on, at `share`."""
    ids = spooled(services, 6)
    processor = Processor(services.pipeline, yield_to=lambda: True, busy_batch=1,
                          max_yield=30.0, share=0.5)
    assert run_until_done(services, processor, ids, limit=20) < 10  # not 6 x 30 s


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_spool_that_stays_busy_does_not_starve_processing(services):
    spool = Spool(services.store, services.blobs)
    ids = [spool.accept(customer_mail("Still processed", "x").as_bytes(),
                        mail_from="jane@customer.test", rcpt_tos=["support@acme.test"])]
    spool.close()
    processor = Processor(services.pipeline, yield_to=lambda: True, busy_batch=2,
                          max_yield=0.2)

    async def run() -> float:
        stop = asyncio.Event()
        start = time.monotonic()
        task = asyncio.create_task(processor.run(stop))
        while services.store.inbound(ids[0]).state != "done":
            assert time.monotonic() - start < 10, "processing starved"
            await asyncio.sleep(0.02)
        stop.set()
        await task
        return time.monotonic() - start

    assert asyncio.run(run()) < 5


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_batch_commits_early_when_another_writer_waits(services):
    """A sender's spool commit (or a portal submission) waiting for SQLite gets in after the
    message under way, not after the whole batch; the batch still ends complete, once."""
    ids = spooled(services, 30)
    first_message = threading.Event()
    done_when_in: list[int] = []
    real = services.pipeline._decide

    def deciding(*args):
        first_message.set()
        return real(*args)

    def another_writer() -> None:
        assert first_message.wait(10)
        with services.store.tx() as s:
            done_when_in.append(s.exec(select(func.count()).select_from(InboundMessage)
                                       .where(InboundMessage.state == "done")).one())

    services.pipeline._decide = deciding  # the real pipeline, watched
    writer = threading.Thread(target=another_writer)
    writer.start()
    done = services.pipeline.process_batch(ids)
    writer.join(10)
    assert done_when_in and done_when_in[0] < len(ids) // 2
    assert len(done) == len(ids)
    assert [services.store.inbound(i).outcome for i in ids] == ["new_ticket"] * len(ids)
    with services.store.read() as s:
        assert s.exec(select(func.count()).select_from(Ticket)).one() == len(ids)
