"""The background work in one place: spooled inbound mail, the outbox, IMAP inboxes.

`serve` runs it inside its own process by default (one command, no configuration); `workestra
worker` runs it alone, so it scales apart from the SMTP and HTTP front ends (`serve
--no-worker`): on two cores, SMTP acceptance then no longer shares an interpreter with the
pipeline. A separate worker learns of new mail by polling the spool table (a few times a
second) and of queued mail by polling the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from pathlib import Path

import sqlalchemy.exc

from gateway.config import Settings
from gateway.heap import freeze_start_up
from gateway.inbound.imap import ImapPollers
from gateway.inbound.processor import Processor
from gateway.inbound.spool import Spool
from gateway.outbound.outbox import OutboxWorker
from gateway.outbound.transport import SentDirectory, SmtpRelay, Transport
from gateway.services import Services, build_services
from storage.blob_sweep import sweep
from storage.blobs import BlobStore
from storage.store import Store

log = logging.getLogger("workestra")
SWEEP_FIRST = 5 * 60.0  # seconds after start: not while it starts up
SWEEP_EVERY = 6 * 3600.0
BEAT_EVERY = 5.0  # seconds between the heartbeat's touches (`workestra worker --alive`)
ALIVE_WITHIN = 60.0  # seconds since the last touch that `--alive` still calls alive


class WorkerError(RuntimeError):
    """The worker cannot start; the message says why."""


def make_transport(settings: Settings) -> Transport:
    return SmtpRelay(settings.relay) if settings.relay else SentDirectory(settings.sent_dir)


class Background:
    """The processor, the outbox worker, the IMAP pollers and the blob sweep, started and
    stopped together."""

    def __init__(self, services: Services, spool: Spool, *, rescan: float = 30.0) -> None:
        settings = services.settings
        self.spool = spool
        self.processor = Processor(services.pipeline, rescan=rescan, yield_to=spool.busy)
        self.outbox = OutboxWorker(services.store, make_transport(settings),
                                   secret=settings.secret_key,
                                   max_attempts=settings.outbox_max_attempts,
                                   backoff_base=settings.outbox_backoff)
        services.mailer.on_queued(self.outbox.wake)
        self.imap = ImapPollers(services, self.processor.submit, spool=spool)
        self.services = services

    def tasks(self, stop: asyncio.Event) -> list[asyncio.Task]:
        return [asyncio.create_task(self.processor.run(stop), name="inbound"),
                asyncio.create_task(self.outbox.run(stop), name="outbox"),
                asyncio.create_task(self.imap.run(stop), name="imap"),
                asyncio.create_task(sweep_blobs(self.services.store, self.services.blobs,
                                                stop), name="blob-sweep")]


async def sweep_blobs(store: Store, blobs: BlobStore, stop: asyncio.Event) -> None:
    """Orphaned files (forms never sent again, a crash between a write and its commit) would
    fill the disk: swept a few minutes after start, then every 6 hours, until `stop`."""
    delay = SWEEP_FIRST
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set():
            return
        delay = SWEEP_EVERY
        try:
            result = await asyncio.to_thread(sweep, store, blobs)
        except Exception:
            log.exception("blob sweep failed; trying again in %g hours", SWEEP_EVERY / 3600)
            continue
        if result.removed or result.leftovers:
            log.info("blob sweep: %s", result.summary())


def heartbeat_file(settings: Settings) -> Path:
    """One per host (a container's own name), in the data dir every container shares."""
    return settings.data_dir / "run" / f"worker-{socket.gethostname()}.alive"


async def heartbeat(path: Path, stop: asyncio.Event) -> None:
    """Touched from the event loop every few seconds: a worker whose loop is stuck (or whose
    process is gone) stops touching it, and its health check fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while not stop.is_set():
        path.touch()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), BEAT_EVERY)
    path.unlink(missing_ok=True)  # stopped on purpose: not alive, and says so at once


def alive(settings: Settings, within: float = ALIVE_WITHIN) -> str | None:
    """None if this host's worker touched its heartbeat within `within` seconds; else why not."""
    path = heartbeat_file(settings)
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return f"no worker is running on this host ({path} is missing)"
    if age > within:
        return f"the worker has not answered for {age:.0f} s (last heartbeat at {path})"
    return None


async def work(settings: Settings) -> None:
    """`workestra worker`: until SIGTERM or SIGINT."""
    try:
        services = await asyncio.to_thread(build_services, settings)
    except sqlalchemy.exc.OperationalError as e:
        raise WorkerError(f"DATABASE_URL: cannot use the database: {e.orig or e}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    spool = Spool(services.store, services.blobs)
    background = Background(services, spool, rescan=0.2)  # new mail is found by polling
    tasks = [*background.tasks(stop),
             asyncio.create_task(heartbeat(heartbeat_file(settings), stop), name="heartbeat")]
    freeze_start_up()
    log.info("worker started: inbound mail, outbox (%s), IMAP inboxes", settings.relay
             or f"written to {settings.sent_dir}")
    await stop.wait()
    log.info("stopping")
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.to_thread(spool.close)
    services.close()
    log.info("stopped")
