"""Small writes that arrive together share one transaction and one commit (group commit).

Under a portal load on SQLite the writers' turn (storage/turns.py) was busy nine tenths of
the time with submissions, each paying on its own for a BEGIN, a COMMIT (an fsync), a session,
a hand-over of the turn, and the reads a transaction keeps for its later writes (a
workspace's sender address, its agents). Here a writer that finds others queued takes their
work into its own transaction: while one batch runs, the next one gathers. A batch is only as
large as the queue, so under a light load every write runs alone, as before.

If any work of a batch fails, or the commit does, the whole transaction is rolled back and
each work runs again in a transaction of its own: a bad submission never spoils another, and
each caller gets its own outcome only, whatever shared its batch. A work must therefore leave
nothing behind but its writes to the session, or things that are safe to do twice
(content-addressed blobs are), and must not call `run` itself.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlmodel import Session

_R = TypeVar("_R")


@dataclass(eq=False)
class _Work(Generic[_R]):
    fn: Callable[[Session], _R]
    done: bool = False
    result: Any = None
    error: BaseException | None = None
    # Set once its caller may go on: its work is done, or it is its turn to lead a batch.
    woken: threading.Event = field(default_factory=threading.Event)

    def outcome(self) -> _R:
        if self.error is not None:
            raise self.error
        return self.result


class GroupCommit:
    """`run(fn)`: fn(session) in a transaction, perhaps with other callers' works; returns
    what fn returned, once its transaction has committed, or raises what fn raised."""

    def __init__(self, tx: Callable[[], AbstractContextManager[Session]],
                 turn: Callable[[], AbstractContextManager], most: int = 8) -> None:
        self._tx = tx
        self._turn = turn
        self.most = most  # works in one transaction at the most: it bounds a batch's time
        self._lock = threading.Lock()
        self._queued: deque[_Work] = deque()
        self._leading = False  # a thread is gathering or running a batch
        self.batches = 0  # transactions committed with more than one work (for tests, metrics)

    @property
    def waiting(self) -> int:
        """Works queued for the next transaction."""
        with self._lock:
            return len(self._queued)

    def run(self, fn: Callable[[Session], _R]) -> _R:
        work = _Work(fn)
        with self._lock:
            lead = not self._leading
            if lead:
                self._leading = True
            else:
                self._queued.append(work)
        if not lead:
            # Each waiter is woken once, by name: waking them all for every batch (one
            # Condition) cost a context switch per waiting thread per batch.
            work.woken.wait()
            if work.done:
                return work.outcome()
            # Not done: the last leader handed this thread the lead (`_leading` stayed set).
        batch = [work]
        try:
            # While this thread waits for the database, more works queue up behind it.
            with self._turn():
                with self._lock:
                    while self._queued and len(batch) < self.most:
                        batch.append(self._queued.popleft())
                self._run(batch)
        except BaseException as e:  # e.g. the turn itself failed: nobody may wait forever
            for w in batch:
                if not w.done:
                    w.error, w.done = e, True
            raise
        finally:
            for w in batch[1:]:
                w.woken.set()  # its result is in
            with self._lock:
                if self._queued:
                    self._queued.popleft().woken.set()  # the oldest waiter leads next
                else:
                    self._leading = False
        return work.outcome()

    def _run(self, batch: list[_Work]) -> None:
        if len(batch) > 1:
            try:
                with self._tx() as s:
                    results = [w.fn(s) for w in batch]
            except Exception:  # each work's own error is found alone, below
                pass
            else:
                self.batches += 1
                for w, result in zip(batch, results, strict=True):
                    w.result, w.done = result, True
                return
        for w in batch:
            try:
                with self._tx() as s:
                    w.result = w.fn(s)
            except Exception as e:
                w.error = e
            w.done = True

