"""The composition root: SMTP and the portal, and by default the background work, in one process.

This is the one module of the gateway that imports the portal (DESIGN.md, dependency direction).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl

import sqlalchemy.exc
import uvicorn

from gateway.config import Settings
from gateway.demo import seed_demo
from gateway.heap import freeze_start_up
from gateway.inbound.receive import ReceiveHandler, smtp_factory
from gateway.inbound.spool import Spool
from gateway.services import build_services
from gateway.worker import Background
from portal.app import create_app

log = logging.getLogger("workestra")


class ServeError(RuntimeError):
    """A socket could not be opened; the message says which."""


def _listen(host: str, port: int, what: str) -> socket.socket:
    """A bound, listening TCP socket, or a ServeError naming the address."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        raise ServeError(f"cannot listen for {what} on {host}:{port}: "
                         f"{e.strerror or e}") from None
    sock.setblocking(False)
    return sock


class _PortalServer(uvicorn.Server):
    """uvicorn without its own signal handling: `serve` stops everything together."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


def _tls(settings: Settings) -> ssl.SSLContext | None:
    if settings.smtp_tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*settings.smtp_tls)
    return context


async def serve(settings: Settings, *, demo: bool = False, worker: bool = True) -> None:
    """SMTP and the portal; with `worker`, the background work too (gateway/worker.py)."""
    try:
        services = await asyncio.to_thread(build_services, settings)
    except sqlalchemy.exc.OperationalError as e:
        raise ServeError(f"DATABASE_URL: cannot use the database: {e.orig or e}") from None
    if demo:
        await asyncio.to_thread(seed_demo, services.store)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    spool = Spool(services.store, services.blobs)  # SMTP and IMAP share one group commit
    background = Background(services, spool) if worker else None
    handler = ReceiveHandler(services.store, spool, background.processor.submit
                             if background else (lambda _id: None))
    smtp_socket = _listen(settings.host, settings.smtp_port, "SMTP")
    http_socket = _listen(settings.host, settings.http_port, "HTTP")
    smtp = await loop.create_server(
        smtp_factory(handler, hostname=settings.host, data_size_limit=settings.max_message_size,
                     tls=_tls(settings), timeout=settings.smtp_timeout),
        sock=smtp_socket)
    log.info("SMTP listening on %s:%s%s", settings.host, settings.smtp_port,
             " (STARTTLS offered)" if settings.smtp_tls else "")

    portal = _PortalServer(uvicorn.Config(create_app(services), host=settings.host,
                                          port=settings.http_port, log_level="warning",
                                          http="httptools",  # C parser: see README
                                          lifespan="off", access_log=False,
                                          log_config=None))  # its lines go through ours
    portal_task = asyncio.create_task(portal.serve(sockets=[http_socket]), name="portal")
    tasks = [portal_task, *(background.tasks(stop) if background else [])]
    while not portal.started and not portal_task.done():
        await asyncio.sleep(0.02)
    if portal_task.done():
        stop.set()
        log.error("the portal did not start")
    else:
        log.info("HTTP listening on http://%s:%s (public URL %s)", settings.host,
                 settings.http_port, settings.public_url)
        freeze_start_up()
    if background:
        log.info("outbound mail: %s", settings.relay if settings.relay
                 else f"written to {settings.sent_dir}")
    else:
        log.info("no background work here: run `workestra worker` beside this")

    await stop.wait()
    log.info("stopping")
    smtp.close()
    portal.should_exit = True
    with contextlib.suppress(TimeoutError):  # 3.12+ waits for idle clients; do not hang
        await asyncio.wait_for(smtp.wait_closed(), 5)
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.to_thread(spool.close)
    services.close()
    log.info("stopped")
