"""The outbox worker: claims due mail, delivers it, retries with backoff, records each attempt."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from gateway import logs
from gateway.outbound.transport import DeliveryError, Transport
from gateway.outbound.verp import return_path
from storage.models import OutboundMessage, utcnow
from storage.store import Delivery, Store

log = logging.getLogger("workestra.outbox")


def backoff(attempt: int, base: float = 5.0, cap: float = 600.0) -> timedelta:
    """5 s, 10 s, 20 s ... up to 10 minutes: a relay down for a minute delays, never loses."""
    return timedelta(seconds=min(cap, base * 2 ** max(0, attempt - 1)))


class OutboxWorker:
    def __init__(self, store: Store, transport: Transport, *, secret: str,
                 max_attempts: int = 8, backoff_base: float = 5.0, poll_interval: float = 1.0,
                 batch: int = 100, connections: int = 20, gather: float = 0.25) -> None:
        self.batch = batch  # claimed, and recorded, in one transaction each
        # Passes start at most this often (seconds): under load, mail is queued one at a time
        # (a submission, a reply), and a pass per mail cost two write transactions per mail.
        # Mail queued while the outbox was idle still goes out at once.
        self.gather = gather
        self.connections = connections  # open to the relay at once
        self.store = store
        self.transport = transport
        self.secret = secret  # for the VERP envelope sender of each mail
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def wake(self) -> None:
        """Thread-safe: called after a transaction that queued mail commits."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = loop = asyncio.get_running_loop()
        last_pass = -self.gather
        while not stop.is_set():
            await asyncio.sleep(max(0.0, last_pass + self.gather - loop.time()))
            last_pass = loop.time()
            self._wake.clear()  # before the pass: mail queued during it wakes the next one
            try:
                if await self.deliver_due():
                    continue  # more may be due: after the pause, not at once
            except Exception:  # the database may be briefly away; try again shortly
                log.exception("outbox pass failed")
            waiter = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, stopper}, timeout=self.poll_interval,
                               return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
        await self.transport.close()  # QUIT on connections kept open to the relay

    async def deliver_due(self) -> int:
        """Deliver what is due now; returns how many were attempted.

        The batch's results are recorded in one transaction: one commit, not one per mail.
        """
        batch = await asyncio.to_thread(self.store.claim_outbound, limit=self.batch)
        if not batch:
            return 0
        open_at_once = asyncio.Semaphore(self.connections)
        results = await asyncio.gather(*(self._deliver(m, open_at_once) for m in batch))
        await asyncio.to_thread(self.store.record_deliveries, results)
        return len(batch)

    async def _deliver(self, m: OutboundMessage, open_at_once: asyncio.Semaphore) -> Delivery:
        with logs.bound(outbound=m.id, ticket=m.ticket_id):
            return await self._deliver_one(m, open_at_once)

    async def _deliver_one(self, m: OutboundMessage, open_at_once: asyncio.Semaphore
                           ) -> Delivery:
        name = f"{m.id:08d}-{m.kind.replace('/', '-')}"
        try:
            try:
                async with open_at_once:
                    answer = await self.transport.send(
                        m.raw, return_path(self.secret, m.mail_from, m.id),  # type: ignore[arg-type]
                        [m.rcpt_to], name)
            except DeliveryError:
                raise
            except Exception as e:  # a full disk, a bug: retry with backoff, never silently
                raise DeliveryError(f"{type(e).__name__}: {e}", permanent=False) from e
        except DeliveryError as e:
            final = e.permanent or m.attempts >= self.max_attempts
            log.warning("outbox %s to %s attempt %s failed%s: %s", m.id, m.rcpt_to, m.attempts,
                        " permanently" if final else "", e)
            return Delivery(m.id, "failed" if final else "retry", str(e),  # type: ignore[arg-type]
                            utcnow() + backoff(m.attempts, self.backoff_base))
        log.info("outbox %s sent to %s (%s)", m.id, m.rcpt_to, m.kind)
        return Delivery(m.id, "sent", str(answer or "")[:500])  # type: ignore[arg-type]
