"""Hands a rendered mail to the relay, or writes it to DATA_DIR/sent/ when there is none."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import aiosmtplib

from gateway.config import Relay


class DeliveryError(Exception):
    """A failed attempt; `permanent` when retrying cannot help (a 5xx answer)."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class Transport(Protocol):
    async def send(self, raw: bytes, sender: str, recipients: list[str], name: str) -> str:
        """Hands the mail over; returns what the other side said, for the attempt record."""
        ...

    async def close(self) -> None:
        """Lets go of anything kept between mails (the outbox worker is stopping)."""
        ...


class SmtpRelay:
    """Delivers through WORKESTRA_SMTP_RELAY; 4xx and connection errors are temporary.

    Connections are kept open between mails (up to `keep` idle ones), as MTAs do with a
    smarthost: a busy outbox pays the TCP, EHLO, STARTTLS and AUTH round trips once, not per
    mail. A connection idle for a while is checked with NOOP before reuse (relays close idle
    sessions); one that fails in any way is closed, never reused mid-transaction.
    """

    def __init__(self, relay: Relay, timeout: float = 30.0, *, keep: int = 20,
                 check_after: float = 5.0) -> None:
        self.relay = relay
        self.timeout = timeout
        self.keep = keep
        self.check_after = check_after
        self._idle: list[tuple[aiosmtplib.SMTP, float, asyncio.AbstractEventLoop]] = []

    def _tls(self) -> dict:
        r = self.relay
        options: dict = {"start_tls": r.security == "starttls", "use_tls": r.security == "tls"}
        if r.security != "none" and r.ca_file:
            options["tls_context"] = ssl.create_default_context(cafile=r.ca_file)
        if r.username:
            options.update(username=r.username, password=r.password or "")
        return options

    async def _client(self) -> aiosmtplib.SMTP:
        loop = asyncio.get_running_loop()
        while self._idle:
            client, since, home = self._idle.pop()
            if home is not loop or not client.is_connected:
                continue  # a connection of another (finished) event loop cannot be used
            if time.monotonic() - since < self.check_after:
                return client
            try:
                await client.noop()
                return client
            except (TimeoutError, aiosmtplib.SMTPException, OSError):
                client.close()
        client = aiosmtplib.SMTP(hostname=self.relay.host, port=self.relay.port,
                                 timeout=self.timeout, **self._tls())
        await client.connect()
        return client

    def _release(self, client: aiosmtplib.SMTP) -> None:
        if client.is_connected and len(self._idle) < self.keep:
            self._idle.append((client, time.monotonic(), asyncio.get_running_loop()))
        else:
            client.close()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client, _, _ in idle:
            try:
                await client.quit()
            except (TimeoutError, aiosmtplib.SMTPException, OSError):
                client.close()

    async def send(self, raw: bytes, sender: str, recipients: list[str], name: str) -> str:
        client: aiosmtplib.SMTP | None = None
        try:
            client = await self._client()
            errors, answer = await client.sendmail(sender, recipients, raw)
        except BaseException as e:
            if client is not None:
                client.close()
            if isinstance(e, aiosmtplib.SMTPAuthenticationError):
                # Our credentials, not the mail: keep it queued until someone fixes the setting.
                raise DeliveryError(f"relay refused our login: {e.code} {e.message}",
                                    permanent=False) from e
            if isinstance(e, aiosmtplib.SMTPResponseException):
                raise DeliveryError(f"{e.code} {e.message}",
                                    permanent=500 <= e.code < 600) from e
            if isinstance(e, TimeoutError | aiosmtplib.SMTPException | OSError):
                raise DeliveryError(f"{type(e).__name__}: {e}", permanent=False) from e
            raise
        if errors:  # some recipients refused (aiosmtplib raises only when all are)
            client.close()
            code, message = next(iter(errors.values()))
            raise DeliveryError(f"{code} {message}", permanent=500 <= code < 600)
        self._release(client)
        return answer


class SentDirectory:
    """The embedded default: each mail becomes DATA_DIR/sent/<name>.eml for a newcomer to read.

    An outbox pass hands over up to a hundred mails at once. A thread each (the default pool)
    spent more time passing the interpreter lock between them than writing, so the mails
    handed over together are written together, by one thread of its own, each file still
    fsynced before its mail counts as sent."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sent-dir")
        self._waiting: list[tuple[bytes, str, asyncio.Future[None]]] = []

    async def send(self, raw: bytes, sender: str, recipients: list[str], name: str) -> str:
        loop = asyncio.get_running_loop()
        written: asyncio.Future[None] = loop.create_future()
        self._waiting.append((raw, name, written))
        if len(self._waiting) == 1:  # the first of a pass: write once the others are in
            loop.call_soon(self._write_waiting, loop)
        await written
        return f"written to {self.root / name}.eml"

    def _write_waiting(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._waiting = self._waiting, []
        job = loop.run_in_executor(self._writer, self._write_all,
                                   [(raw, name) for raw, name, _ in batch])

        def finished(job: asyncio.Future[list[BaseException | None]]) -> None:
            failed = job.exception()
            errors = [failed] * len(batch) if failed is not None else job.result()
            for (_, _, written), error in zip(batch, errors, strict=True):
                if written.done():  # its sender was cancelled
                    continue
                if error is None:
                    written.set_result(None)
                else:
                    written.set_exception(error)

        job.add_done_callback(finished)

    async def close(self) -> None:
        self._writer.shutdown(wait=True)

    def _write_all(self, mails: list[tuple[bytes, str]]) -> list[BaseException | None]:
        errors: list[BaseException | None] = []
        for raw, name in mails:
            try:
                self._write(raw, name)
                errors.append(None)
            except OSError as e:  # a full disk fails this mail, which the outbox retries
                errors.append(e)
        return errors

    def _write(self, raw: bytes, name: str) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.root / f"{name}.eml")
        except BaseException:  # a failed mail leaves no half-written file behind
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
