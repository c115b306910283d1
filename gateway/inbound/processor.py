"""Runs spooled messages through the pipeline, one at a time, off the event loop.

On start, and again every `rescan` seconds, it takes whatever was spooled but never finished
(a crash, a kill -9, a database that was briefly away), so a message answered `250` always
reaches an outcome.
"""

from __future__ import annotations

import asyncio
import logging

from gateway.inbound.pipeline import Pipeline

log = logging.getLogger("workestra.inbound")


class Processor:
    def __init__(self, pipeline: Pipeline, *, rescan: float = 30.0) -> None:
        self.pipeline = pipeline
        self.rescan = rescan
        self._queue: asyncio.Queue[int] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None

    def submit(self, inbound_id: int) -> None:
        """Thread-safe: called by the receiver once a message is durable."""
        if self._loop is None:
            return  # picked up by the start-up scan instead
        self._loop.call_soon_threadsafe(self._queue.put_nowait, inbound_id)

    async def _scan(self) -> None:
        try:
            pending = await asyncio.to_thread(self.pipeline.store.pending_inbound)
        except Exception:
            log.exception("could not list pending inbound messages")
            return
        if pending:
            log.info("resuming %d spooled message(s)", len(pending))
        for inbound_id in pending:
            self._queue.put_nowait(inbound_id)

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        await self._scan()
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                getter = asyncio.ensure_future(self._queue.get())
                done, _ = await asyncio.wait({getter, stopper}, timeout=self.rescan,
                                             return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    if not stop.is_set():
                        await self._scan()
                    continue
                inbound_id = getter.result()
                try:  # process() is idempotent: an id queued twice is handled once
                    await asyncio.to_thread(self.pipeline.process, inbound_id)
                except Exception:  # the store is away: the row stays pending for the rescan
                    log.exception("inbound %s: store unavailable, retrying later", inbound_id)
        finally:
            stopper.cancel()
