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
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlmodel import Session

_R = TypeVar("_R")


@dataclass(eq=False)
class _Work(Generic[_R]):
    fn: Callable[[Session], _R]
    done: bool = False
    result: Any = None
    error: BaseException | None = None

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
        self._cond = threading.Condition()
        self._queued: deque[_Work] = deque()
        self._leading = False  # a thread is gathering or running a batch
        self.batches = 0  # transactions committed with more than one work (for tests, metrics)

    @property
    def waiting(self) -> int:
        """Works queued for the next transaction."""
        with self._cond:
            return len(self._queued)

    def run(self, fn: Callable[[Session], _R]) -> _R:
        work = _Work(fn)
        with self._cond:
            self._queued.append(work)
            while self._leading and not work.done:
                self._cond.wait()
            if work.done:
                return work.outcome()
            self._leading = True
            self._queued.remove(work)
        batch = [work]
        try:
            # While this thread waits for the database, more works queue up behind it.
            with self._turn():
                with self._cond:
                    while self._queued and len(batch) < self.most:
                        batch.append(self._queued.popleft())
                self._run(batch)
        except BaseException as e:  # e.g. the turn itself failed: nobody may wait forever
            for w in batch:
                if not w.done:
                    w.error, w.done = e, True
            raise
        finally:
            with self._cond:
                self._leading = False
                self._cond.notify_all()  # results are in; one of the queued leads next
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

