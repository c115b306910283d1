"""The processor lets senders waiting on the spool go first, and never starves for it."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.inbound.processor import Processor
from gateway.inbound.spool import Spool
from tests.conftest import customer_mail


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_while_senders_wait_processing_pauses_then_takes_small_batches(services):
    spool = Spool(services.store, services.blobs)
    ids = [spool.accept(customer_mail(f"Request {i}", "x", sender=f"c{i}@customer.test")
                        .as_bytes(), mail_from=f"c{i}@customer.test",
                        rcpt_tos=["support@acme.test"]) for i in range(6)]
    spool.close()
    busy_until = time.monotonic() + 0.5  # senders on the line for half a second
    batches: list[tuple[float, int]] = []
    real = services.pipeline.process_batch

    def recording(batch: list[int]):
        batches.append((time.monotonic(), len(batch)))
        return real(batch)

    services.pipeline.process_batch = recording  # the real pipeline, watched
    processor = Processor(services.pipeline, yield_to=lambda: time.monotonic() < busy_until,
                          busy_batch=2, max_yield=5.0)

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(processor.run(stop))
        while not all(services.store.inbound(i).state == "done" for i in ids):
            await asyncio.sleep(0.05)
        stop.set()
        await task

    asyncio.run(run())
    assert batches[0][0] >= busy_until  # nothing started while senders waited
    assert sum(n for _, n in batches) == 6
    assert batches[0][1] <= 2  # right after a busy spell: a small batch
    assert [services.store.inbound(i).outcome for i in ids] == ["new_ticket"] * 6


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
