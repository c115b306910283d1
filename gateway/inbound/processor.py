"""Runs spooled messages through the pipeline off the event loop, in batches when busy.

On start, and again every `rescan` seconds, it takes whatever was spooled but never finished
(a crash, a kill -9, a database that was briefly away), so a message answered `250` always
reaches an outcome.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from gateway.inbound.pipeline import Pipeline

log = logging.getLogger("workestra.inbound")
RETRY_AFTER = 2.0  # seconds before messages that met an unavailable store are tried again


class Processor:
    """`yield_to` says when SMTP senders are waiting on this process's spool: processing then
    takes small batches and waits between them, so the database's write lock and the
    interpreter go to the senders first. Mail already accepted can wait a moment; a sender on
    the line cannot. It never waits more than `max_yield` seconds at a time, nor so long
    that it gets less than `share` of the time: a stream of mail that never pauses is still
    processed, a little behind (bench/ingest.py shows both rates)."""

    def __init__(self, pipeline: Pipeline, *, rescan: float = 30.0, batch: int = 50,
                 yield_to: Callable[[], bool] | None = None, busy_batch: int = 2,
                 max_yield: float = 1.0, share: float = 0.1) -> None:
        self.pipeline = pipeline
        self.rescan = rescan
        self.batch = batch  # messages per transaction when several are waiting
        self.yield_to = yield_to
        self.busy_batch = busy_batch
        self.max_yield = max_yield
        self.share = share
        self._last_batch = 0.05  # seconds the last batch took (a guess until one has run)
        self._queue: asyncio.Queue[int] = asyncio.Queue()
        self._queued: set[int] = set()  # ids waiting in the queue, so a rescan adds no copies
        self._loop: asyncio.AbstractEventLoop | None = None

    def submit(self, inbound_id: int) -> None:
        """Thread-safe: called by the receiver once a message is durable."""
        if self._loop is None:
            return  # picked up by the start-up scan instead
        self._loop.call_soon_threadsafe(self._enqueue, inbound_id)

    def _enqueue(self, inbound_id: int) -> None:
        if inbound_id not in self._queued:
            self._queued.add(inbound_id)
            self._queue.put_nowait(inbound_id)

    async def _scan(self) -> None:
        try:
            pending = await asyncio.to_thread(self.pipeline.store.pending_inbound)
        except Exception:
            log.exception("could not list pending inbound messages")
            return
        new = [i for i in pending if i not in self._queued]
        if new:
            log.info("picking up %d spooled message(s)", len(new))
        for inbound_id in new:
            self._enqueue(inbound_id)

    async def _make_way(self, loop: asyncio.AbstractEventLoop) -> int:
        """Let waiting senders go first; the batch size to take now."""
        if self.yield_to is None or not self.yield_to():
            return self.batch
        # processing keeps `share` of the time: after a batch of t seconds, wait t*(1-s)/s
        wait = self._last_batch * (1 - self.share) / self.share
        deadline = loop.time() + min(self.max_yield, wait)
        while self.yield_to() and loop.time() < deadline:
            await asyncio.sleep(0.002)
        return self.busy_batch

    async def run(self, stop: asyncio.Event) -> None:
        loop = self._loop = asyncio.get_running_loop()
        await self._scan()
        next_scan = loop.time() + self.rescan
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                if loop.time() >= next_scan:  # on a timer, busy or not
                    await self._scan()
                    next_scan = loop.time() + self.rescan
                getter = asyncio.ensure_future(self._queue.get())
                done, _ = await asyncio.wait({getter, stopper},
                                             timeout=max(0.0, next_scan - loop.time()),
                                             return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    continue
                size = await self._make_way(loop)
                batch = [getter.result()]
                while len(batch) < size and not self._queue.empty():
                    batch.append(self._queue.get_nowait())  # whatever else is waiting
                self._queued.difference_update(batch)
                started = loop.time()
                try:  # idempotent: an id queued twice is handled once
                    await asyncio.to_thread(self.pipeline.process_batch, batch)
                    self._last_batch = loop.time() - started
                except Exception:  # the store is away: the rows stay pending for a rescan, soon
                    log.exception("inbound %s: store unavailable, retrying later", batch)
                    next_scan = min(next_scan, loop.time() + RETRY_AFTER)
        finally:
            stopper.cancel()
