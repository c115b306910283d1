"""Makes a received message durable and recorded, the step before anything is acknowledged.

Group commit: every message waiting to be spooled is inserted, bytes and all, by one committer
thread in one transaction, so one fsync (SQLite WAL) or one WAL flush (PostgreSQL) covers all
the SMTP sessions that reached DATA meanwhile. A caller learns its row id only after that
transaction committed, or gets an error (the sender is then answered 451 and retries). The
pipeline moves the bytes to the blob store when it records the message's outcome.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, insert
from sqlalchemy.exc import OperationalError

from storage.blobs import BlobStore
from storage.engine import set_busy_timeout
from storage.models import InboundMessage, utcnow
from storage.store import Store

log = logging.getLogger("workestra.spool")
_SQLITE_BUSY_MS = 30_000  # as storage.engine sets it for every connection
_SQLITE_TRY_MS = 2  # on the committer's connection: fail fast, then retry
_SQLITE_RETRY_S = 0.0005
_TABLE = InboundMessage.__table__  # type: ignore[attr-defined]
# Ids come back in the order of the rows given (one multi-row INSERT where the driver can).
_INSERT = insert(_TABLE).returning(_TABLE.c.id, sort_by_parameter_order=True)


class SpoolError(RuntimeError):
    """The message could not be made durable; nothing was recorded for it."""


@dataclass
class _Pending:
    """One message waiting for the next commit; the row is built off the event loop."""

    raw: bytes
    values: dict[str, Any]
    future: Future[int] = field(default_factory=Future)


class Spool:
    """Batches concurrent accepts into one committed transaction each, on a single thread.

    The committer thread starts with an accept and ends after `linger` idle seconds; it holds
    a database connection only while committing. `close()` stops taking new messages and
    commits those already waiting.
    """

    def __init__(self, store: Store, blobs: BlobStore, *, max_batch: int = 500,
                 max_batch_bytes: int = 64 * 1024 * 1024, linger: float = 1.0,
                 recent: float = 0.02) -> None:
        self.store = store
        self.blobs = blobs  # where the pipeline keeps the bytes once processed
        self.max_batch = max_batch
        self.max_batch_bytes = max_batch_bytes
        self.linger = linger  # idle seconds before the committer thread ends
        self.recent = recent  # seconds after a message came in that more are expected
        self._last_submit = -recent
        self._cond = threading.Condition()
        self._waiting: list[_Pending] = []
        self._thread: threading.Thread | None = None
        self._closed = False
        self._committing = False

    def submit(self, raw: bytes, *, mail_from: str, rcpt_tos: Sequence[str],
               channel: str = "smtp", imap_inbox_id: int | None = None) -> Future[int]:
        """Queue a message for the next commit; the future holds its id once committed.

        Lets the event loop wait without parking a worker thread per SMTP session.
        """
        pending = _Pending(raw, {"mail_from": mail_from, "rcpt_tos": ",".join(rcpt_tos),
                                 "channel": channel, "imap_inbox_id": imap_inbox_id})
        with self._cond:
            if self._closed:
                raise SpoolError("the spool is closed")
            self._waiting.append(pending)
            self._last_submit = time.monotonic()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="spool-commit",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()
        return pending.future

    def accept(self, raw: bytes, *, mail_from: str, rcpt_tos: Sequence[str],
               channel: str = "smtp", imap_inbox_id: int | None = None) -> int:
        """Returns the inbound id; only after this may the sender be told `250`."""
        return self.submit(raw, mail_from=mail_from, rcpt_tos=rcpt_tos, channel=channel,
                           imap_inbox_id=imap_inbox_id).result()

    def busy(self) -> bool:
        """Messages wait for a commit, one is under way, or one came in a moment ago (in a
        stream of deliveries the next is already on its way): other work should let them go
        first, since a sender is waiting on the line for its 250."""
        return (self._committing or bool(self._waiting)
                or time.monotonic() - self._last_submit < self.recent)

    def close(self) -> None:
        """Refuse new messages, commit the ones already waiting, stop the committer."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _next_batch(self) -> list[_Pending] | None:
        """Everything waiting (up to the caps); None once closed or idle for `linger` seconds,
        and then the thread ends (the next submit starts another)."""
        with self._cond:
            if not self._waiting and not self._closed:
                self._cond.wait(self.linger)
            if not self._waiting:
                self._thread = None
                return None
            n, size = 0, 0
            while n < len(self._waiting) and n < self.max_batch and size < self.max_batch_bytes:
                size += len(self._waiting[n].raw)
                n += 1
            batch, self._waiting[:n] = self._waiting[:n], []
        # A caller that gave up (its SMTP session went away) is not recorded; the others can
        # no longer be cancelled, so each gets its answer.
        return [p for p in batch if p.future.set_running_or_notify_cancel()]

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            if not batch:
                continue
            self._committing = True
            try:
                ids = self._commit(batch)
            except BaseException as e:  # every caller of the batch is told; none gets a 250
                log.warning("spool commit of %d message(s) failed: %s", len(batch), e)
                for pending in batch:
                    err = SpoolError(f"could not record the message: {e}")
                    err.__cause__ = e
                    pending.future.set_exception(err)
                if not isinstance(e, Exception):
                    raise
                continue
            finally:
                self._committing = False
            for pending, inbound_id in zip(batch, ids, strict=True):
                pending.future.set_result(inbound_id)

    def _commit(self, batch: list[_Pending]) -> list[int]:
        """One INSERT for the whole batch, in one transaction: all rows are recorded, or none.

        On SQLite it waits for its turn among the writers (storage/turns.py), and a batch of
        inbound mail being processed meanwhile commits early to let it in. Should a writer
        that takes no turns hold the lock, the connection waits in short steps of its own:
        SQLite's busy handler sleeps up to 100 ms between tries.
        """
        now = utcnow()
        rows = [{**p.values, "raw": p.raw, "raw_sha256": hashlib.sha256(p.raw).hexdigest(),
                 "size": len(p.raw), "state": "received", "received_at": now} for p in batch]
        conn = self.store.engine.connect()
        try:
            if not self.store.postgres:
                set_busy_timeout(conn, _SQLITE_TRY_MS)
            with self.store.turn():
                ids = self._insert(conn, rows)
        except BaseException:
            conn.invalidate()  # not back to the pool in an unknown state
            conn.close()
            raise
        try:  # the rows are committed: a failure from here on must not turn into a 451
            if not self.store.postgres:
                set_busy_timeout(conn, _SQLITE_BUSY_MS)
        except Exception:
            conn.invalidate()
        conn.close()
        return ids

    def _insert(self, conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
        deadline = time.monotonic() + _SQLITE_BUSY_MS / 1000
        while True:
            try:
                with conn.begin():  # BEGIN IMMEDIATE on SQLite (storage.engine)
                    return list(conn.execute(_INSERT, rows).scalars())
            except OperationalError as e:
                if self.store.postgres or "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(_SQLITE_RETRY_S)  # another writer holds the lock: try again soon
