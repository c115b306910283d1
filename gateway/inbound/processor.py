"""Runs spooled messages through the pipeline, one at a time, off the event loop.

On start it first takes whatever was spooled but never finished (a crash, a kill -9), so a
message answered `250` always reaches an outcome.
"""

from __future__ import annotations

import asyncio
import logging

from gateway.inbound.pipeline import Pipeline

log = logging.getLogger("workestra.inbound")


class Processor:
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._queue: asyncio.Queue[int] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.idle = asyncio.Event()

    def submit(self, inbound_id: int) -> None:
        """Thread-safe: called by the receiver once a message is durable."""
        if self._loop is None:
            return  # picked up by the start-up scan instead
        self._loop.call_soon_threadsafe(self._queue.put_nowait, inbound_id)

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        for inbound_id in await asyncio.to_thread(self.pipeline.store.pending_inbound):
            self._queue.put_nowait(inbound_id)
        while not stop.is_set():
            self.idle.set() if self._queue.empty() else self.idle.clear()
            getter = asyncio.ensure_future(self._queue.get())
            stopper = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if getter not in done:
                getter.cancel()
                break
            self.idle.clear()
            try:
                await asyncio.to_thread(self.pipeline.process, getter.result())
            except Exception:  # the store itself is away: the row stays pending for a rescan
                log.exception("inbound processing failed")
