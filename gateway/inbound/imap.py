"""Reads support inboxes over IMAP into the spool, one poller per inbox (aioimaplib).

Each new message (UID above the saved position) is fetched with BODY.PEEK[] so the server
marks nothing, made durable by the spool, then flagged \\Seen or moved to the done folder, and
only then is the position saved. A connection dropped anywhere in that sequence loses nothing:
the message is fetched again, and bytes this inbox already spooled are not spooled twice. A
changed UIDVALIDITY means the saved UIDs name other messages now, so reading restarts from the
first one (the pipeline's Message-ID dedupe keeps refetched mail from becoming new tickets).
Between rounds the poller waits in IDLE when the server offers it and polls otherwise; any
failure is recorded on the inbox and retried with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import re
import ssl
from collections.abc import Callable, Sequence
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

import aioimaplib

from gateway.inbound.spool import Spool
from storage import inboxes
from storage.models import ImapInbox
from storage.store import Store

log = logging.getLogger("workestra.imap")

_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_LITERAL = re.compile(rb"\{(\d+)\}$")


class ImapError(RuntimeError):
    """The server refused something; the message says what, for the inbox's last_error."""


class ConnectionLost(ImapError):
    """The connection dropped while a command or IDLE was waiting for the server."""


def envelope_sender(raw: bytes) -> str:
    """The Return-Path the delivering server recorded: IMAP has no envelope of its own.

    Authorisation compares it with From, and an empty one marks a bounce, as over SMTP.
    """
    head = BytesHeaderParser(policy=compat32).parsebytes(raw, headersonly=True)
    value = head.get("Return-Path")
    if value is None:
        return ""
    return str(value).strip().strip("<>").strip()


def describe(error: BaseException, inbox: ImapInbox | None) -> str:
    """One line a person can act on, for logs and the inbox's last_error."""
    where = f"{inbox.host}:{inbox.port}" if inbox else "the server"
    if isinstance(error, ConnectionLost):
        return f"{where} closed the connection"
    if isinstance(error, ImapError):
        return str(error)
    if isinstance(error, TimeoutError | aioimaplib.CommandTimeout):
        return f"{where} did not answer in time"
    if isinstance(error, ssl.SSLError):
        return f"TLS with {where} failed: {error.reason or error}"
    if isinstance(error, ConnectionRefusedError):
        return f"cannot connect to {where}: connection refused"
    if isinstance(error, OSError):
        return f"connection to {where} failed: {error.strerror or error}"
    return f"{type(error).__name__}: {error}"


class ImapPoller:
    """Keeps one inbox read into the spool until `stop` is set; never raises for server trouble.

    `state` (connecting, syncing, idle, polling, backoff, stopped) and `failures` say where it
    is, for logs and tests. `ssl_context` replaces the default verifying context (a private CA).
    """

    def __init__(self, inbox_id: int, store: Store, spool: Spool,
                 on_spooled: Callable[[int], None], *, poll_interval: float = 60.0,
                 idle_renew: float = 20 * 60.0, timeout: float = 30.0,
                 backoff: tuple[float, float] = (1.0, 300.0),
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.inbox_id = inbox_id
        self.store = store
        self.spool = spool
        self.on_spooled = on_spooled
        self.poll_interval = poll_interval
        self.idle_renew = idle_renew
        self.timeout = timeout
        self.backoff_min, self.backoff_max = backoff
        self.ssl_context = ssl_context
        self.state = "stopped"
        self.failures = 0
        self._lost = asyncio.Event()
        self._client: aioimaplib.IMAP4 | None = None

    # -- the outer loop: sessions, and backoff between them ---------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        delay = self.backoff_min
        while not stop.is_set():
            inbox: ImapInbox | None = None
            try:
                inbox = await asyncio.to_thread(inboxes.inbox, self.store, self.inbox_id)
                if inbox is None or not inbox.enabled:
                    log.info("imap inbox %s: removed or disabled, poller ends", self.inbox_id)
                    break
                async for _ in self._session(inbox, stop):
                    delay = self.backoff_min  # logged in and selected: backoff starts over
            except Exception as e:  # every failure is retried; nothing here may end the process
                self.failures += 1
                message = describe(e, inbox)
                log.warning("imap inbox %s: %s; retrying in %.1f s", self.inbox_id, message,
                            delay)
                with contextlib.suppress(Exception):  # the store itself may be what failed
                    await asyncio.to_thread(inboxes.record_error, self.store, self.inbox_id,
                                            message)
                self.state = "backoff"
                await _wait(stop, delay * random.uniform(0.9, 1.1))
                delay = min(delay * 2, self.backoff_max)
            finally:
                await self._close()
        self.state = "stopped"

    async def _session(self, inbox: ImapInbox, stop: asyncio.Event):
        """Connects, then alternates sync and wait; yields once the folder is selected."""
        self.state = "connecting"
        client = await self._connect(inbox)
        reply = await self._call(client.login(aioimaplib.quoted(inbox.username), inbox.password))
        if reply.result != "OK":
            raise ImapError(f"login as {inbox.username} on {inbox.host}:{inbox.port} refused: "
                            f"{_text(reply.lines)}")
        # IDLE and MOVE may be offered only once logged in: ask again
        await self._call(asyncio.wait_for(client.protocol.capability(), self.timeout))
        if inbox.done_folder:  # fails harmlessly when it exists already
            await self._call(client.create(aioimaplib.quoted(inbox.done_folder)))
        reply = await self._call(client.select(aioimaplib.quoted(inbox.folder)))
        if reply.result != "OK":
            raise ImapError(f"cannot open folder {inbox.folder!r}: {_text(reply.lines)}")
        uidvalidity = _uidvalidity(reply.lines)
        last_uid = inbox.last_uid
        if inbox.uidvalidity != uidvalidity:
            if inbox.uidvalidity is not None:
                log.warning("imap inbox %s: UIDVALIDITY of %s changed (%s -> %s), reading it "
                            "again from the start", self.inbox_id, inbox.folder,
                            inbox.uidvalidity, uidvalidity)
            last_uid = 0
            await asyncio.to_thread(inboxes.save_position, self.store, self.inbox_id,
                                    uidvalidity, 0)
        if inbox.last_error:
            await asyncio.to_thread(inboxes.record_error, self.store, self.inbox_id, None)
        yield
        rcpt_tos = await asyncio.to_thread(self.store.support_addresses,
                                           workspace_id=inbox.workspace_id)
        idle = client.has_capability("IDLE")
        while not stop.is_set():
            self.state = "syncing"
            last_uid = await self._sync(client, inbox, uidvalidity, last_uid, rcpt_tos[:1], stop)
            if stop.is_set():
                break
            if idle:
                await self._idle(client, stop)
            else:
                self.state = "polling"
                await self._until(asyncio.ensure_future(stop.wait()), self.poll_interval)

    # -- connecting ---------------------------------------------------------------------------

    async def _connect(self, inbox: ImapInbox) -> aioimaplib.IMAP4:
        self._lost = asyncio.Event()
        tls = inbox.security == "tls"
        client = aioimaplib.IMAP4(host=inbox.host, port=inbox.port, timeout=self.timeout,
                                  conn_lost_cb=lambda _exc: self._lost.set(),
                                  ssl_context=self._tls_context() if tls else None)
        self._client = client
        await client.wait_hello_from_server()
        if inbox.security == "starttls":
            await self._starttls(client, inbox)
        return client

    def _tls_context(self) -> ssl.SSLContext:
        return self.ssl_context or ssl.create_default_context()

    async def _starttls(self, client: aioimaplib.IMAP4, inbox: ImapInbox) -> None:
        """aioimaplib has no STARTTLS: send it, then upgrade the same transport in place."""
        protocol = client.protocol
        if "STARTTLS" not in protocol.capabilities:
            raise ImapError(f"{inbox.host}:{inbox.port} does not offer STARTTLS")
        command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        reply = await self._call(asyncio.wait_for(protocol.execute(command), self.timeout))
        if reply.result != "OK":
            raise ImapError(f"STARTTLS refused by {inbox.host}:{inbox.port}: "
                            f"{_text(reply.lines)}")
        loop = asyncio.get_running_loop()
        protocol.transport = await asyncio.wait_for(
            loop.start_tls(protocol.transport, protocol, self._tls_context(),
                           server_hostname=inbox.host), self.timeout)
        # capabilities may differ once encrypted
        await self._call(asyncio.wait_for(protocol.capability(), self.timeout))

    async def _close(self) -> None:
        """Log out politely when the connection still works; always drop it."""
        client, self._client = self._client, None
        if client is None:
            return
        protocol = client.protocol
        if protocol.transport is not None and not self._lost.is_set():
            with contextlib.suppress(Exception):
                if client.has_pending_idle():
                    client.idle_done()
                await asyncio.wait_for(self._call(client.logout()), 2.0)
        if protocol.transport is not None:
            protocol.transport.close()
        for task in [*client.tasks, *protocol.tasks]:  # waiters that can never finish now
            task.cancel()

    async def _call(self, awaitable) -> Any:
        """Awaits an IMAP command, or raises ConnectionLost when the server goes away first.

        aioimaplib leaves a command pending forever when the connection drops mid-reply.
        """
        command = asyncio.ensure_future(awaitable)
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait({command, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:  # also when we are cancelled: leave nothing waiting behind
            lost.cancel()
            unfinished = not command.done()
            if unfinished:
                command.cancel()
        if unfinished:
            raise ConnectionLost("the connection dropped")
        return command.result()

    # -- reading the folder -------------------------------------------------------------------

    async def _sync(self, client: aioimaplib.IMAP4, inbox: ImapInbox, uidvalidity: int,
                    last_uid: int, rcpt_tos: Sequence[str], stop: asyncio.Event) -> int:
        """Takes every message above `last_uid`, oldest first; returns the new position."""
        reply = await self._call(client.uid_search("UID", f"{last_uid + 1}:*", charset=None))
        if reply.result != "OK":
            raise ImapError(f"searching {inbox.folder!r} failed: {_text(reply.lines)}")
        for uid in _search_uids(reply.lines, above=last_uid):
            if stop.is_set():
                break
            reply = await self._call(client.uid("fetch", str(uid), "(UID BODY.PEEK[])"))
            if reply.result != "OK":
                raise ImapError(f"fetching UID {uid} failed: {_text(reply.lines)}")
            raw = _fetched_body(reply.lines)
            if raw is not None:  # None: expunged meanwhile by someone else
                await self._spool(raw, inbox, rcpt_tos)
                await self._mark_done(client, inbox, uid)
            await asyncio.to_thread(inboxes.save_position, self.store, self.inbox_id,
                                    uidvalidity, uid)
            last_uid = uid
        return last_uid

    async def _spool(self, raw: bytes, inbox: ImapInbox, rcpt_tos: Sequence[str]) -> None:
        digest = hashlib.sha256(raw).hexdigest()
        if await asyncio.to_thread(inboxes.already_spooled, self.store, self.inbox_id, digest):
            return  # fetched again after a drop or crash between the spool and the flag
        inbound_id = await asyncio.to_thread(
            self.spool.accept, raw, mail_from=envelope_sender(raw), rcpt_tos=list(rcpt_tos),
            channel="imap", imap_inbox_id=self.inbox_id)
        self.on_spooled(inbound_id)

    async def _mark_done(self, client: aioimaplib.IMAP4, inbox: ImapInbox, uid: int) -> None:
        """Move to the done folder, or flag \\Seen; the message is durable by now."""
        if not inbox.done_folder:
            reply = await self._call(client.uid("store", str(uid), "+FLAGS.SILENT", r"(\Seen)"))
        elif client.has_capability("MOVE"):
            reply = await self._call(client.uid("move", str(uid),
                                                aioimaplib.quoted(inbox.done_folder)))
        else:
            reply = await self._call(client.uid("copy", str(uid),
                                                aioimaplib.quoted(inbox.done_folder)))
            if reply.result == "OK":
                reply = await self._call(client.uid("store", str(uid), "+FLAGS.SILENT",
                                                    r"(\Deleted)"))
            if reply.result == "OK" and client.has_capability("UIDPLUS"):
                reply = await self._call(client.uid("expunge", str(uid)))
        if reply.result != "OK":  # the mail is safe; only the mailbox's tidiness suffers
            log.warning("imap inbox %s: could not mark UID %s done: %s", self.inbox_id, uid,
                        _text(reply.lines))

    # -- waiting for more ---------------------------------------------------------------------

    async def _idle(self, client: aioimaplib.IMAP4, stop: asyncio.Event) -> None:
        """IDLE until the server reports a change, the renewal time passes, or `stop`."""
        idle = await self._call(client.idle_start(timeout=self.idle_renew))
        self.state = "idle"
        push = asyncio.ensure_future(client.protocol.idle_queue.get())
        stopping = asyncio.ensure_future(stop.wait())
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait({push, stopping, lost, idle}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (push, stopping, lost):
                waiter.cancel()
        if self._lost.is_set():
            raise ConnectionLost("the connection dropped")
        if not idle.done():
            client.idle_done()
            await self._call(asyncio.wait_for(idle, self.timeout))

    async def _until(self, waiter: asyncio.Future, seconds: float) -> None:
        """Sleeps up to `seconds`, less if `waiter` finishes; raises if the connection drops."""
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait({waiter, lost}, timeout=seconds,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            lost.cancel()
        if self._lost.is_set():
            raise ConnectionLost("the connection dropped")


class ImapPollers:
    """One poller per enabled inbox; inboxes added later are picked up every `rescan` s.

    Shares `spool` with the SMTP receiver when given one (one group commit for both).
    """

    def __init__(self, services: Any, on_spooled: Callable[[int], None], *,
                 spool: Spool | None = None, rescan: float = 60.0, **poller_options: Any) -> None:
        self.services = services
        self.on_spooled = on_spooled
        self._own_spool = spool is None
        self.spool = spool or Spool(services.store, services.blobs)
        self.rescan = rescan
        self.poller_options = poller_options
        self.pollers: dict[int, ImapPoller] = {}

    async def run(self, stop: asyncio.Event) -> None:
        tasks: dict[int, asyncio.Task] = {}
        try:
            while not stop.is_set():
                try:
                    enabled = await asyncio.to_thread(inboxes.enabled_inboxes,
                                                      self.services.store)
                except Exception:
                    log.exception("could not list IMAP inboxes; trying again later")
                    enabled = []
                for inbox in enabled:
                    task = tasks.get(inbox.id)  # type: ignore[arg-type]
                    if task is None or task.done():
                        poller = ImapPoller(inbox.id, self.services.store,  # type: ignore[arg-type]
                                            self.spool, self.on_spooled, **self.poller_options)
                        self.pollers[inbox.id] = poller  # type: ignore[index]
                        tasks[inbox.id] = asyncio.create_task(  # type: ignore[index]
                            poller.run(stop), name=f"imap-{inbox.id}")
                        log.info("IMAP inbox %s: reading %s on %s:%s", inbox.id, inbox.folder,
                                 inbox.host, inbox.port)
                await _wait(stop, self.rescan)
        finally:
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            if self._own_spool:
                await asyncio.to_thread(self.spool.close)


# -- small helpers ------------------------------------------------------------------------------

async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def _text(lines: Sequence[Any]) -> str:
    """The server's own words from a reply, for error messages."""
    words = [bytes(line).decode("utf-8", "replace") for line in lines if line]
    return " ".join(words).strip() or "no reason given"


def _uidvalidity(lines: Sequence[Any]) -> int:
    for line in lines:
        match = _UIDVALIDITY.search(bytes(line))
        if match:
            return int(match.group(1))
    raise ImapError("the server sent no UIDVALIDITY for the folder")


def _search_uids(lines: Sequence[Any], *, above: int) -> list[int]:
    """UIDs from a SEARCH reply; `N:*` also matches the last UID when it is below N.

    aioimaplib hands over the untagged lines without their `SEARCH` word, then the status.
    """
    found: set[int] = set()
    for line in lines[:-1]:
        found.update(int(word) for word in bytes(line).split() if word.isdigit())
    return sorted(uid for uid in found if uid > above)


def _fetched_body(lines: Sequence[Any]) -> bytes | None:
    """The literal that follows `BODY[] {N}` in a FETCH reply, or None when absent."""
    for i, line in enumerate(lines[:-1]):
        line = bytes(line)
        match = _LITERAL.search(line)
        if match and b"BODY[]" in line:
            body = bytes(lines[i + 1])
            if len(body) == int(match.group(1)):
                return body
    return None
