"""Writers of one SQLite database take turns, across threads and across processes.

SQLite lets one writer in at a time. Left to SQLite, a writer that finds the database locked
sleeps in its busy handler, in growing steps of up to 100 ms, and tries again: under load the
lock sat free while writers slept (a portal submission took 700 ms behind the pipeline, and a
`worker` process starved `serve`'s SMTP acceptance to a seventh of its speed). Here the
threads of a process queue on a lock, and processes on an `flock` of a file beside the
database; each is handed the turn the moment it is free.

A long writer (a batch of inbound mail) asks `wanted()` between its steps and commits early
when another writer waits, so a sender waiting for its `250` waits for one message, not fifty.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import weakref
from types import TracebackType


class Turns:
    """First come, first served: in this process by ticket, and a process that finds another
    waiting lets it in first. Re-entrant: a nested transaction in the same thread passes
    straight through (and then waits for SQLite itself, as it always did)."""

    def __init__(self, database: str | None) -> None:
        self._cond = threading.Condition()
        self._issued = 0  # tickets handed out in this process
        self._serving = 0  # the ticket whose turn it is
        self._owner: int | None = None  # the thread holding the turn
        self._depth = 0  # and its nesting
        # An in-memory database has one process: the thread lock is enough.
        self._files = None if not database or database == ":memory:" else (
            _open(f"{database}-turn"),  # held exclusively by the process whose turn it is
            _open(f"{database}-wait"),  # held shared by each process waiting for the turn
            _open(f"{database}-wait"),  # a second open file: `wanted` probes with it
        )
        if self._files is not None:  # closed with the last Store that uses them
            weakref.finalize(self, _close, self._files)

    def __enter__(self) -> Turns:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return self
            ticket, self._issued = self._issued, self._issued + 1
            while self._serving != ticket:
                self._cond.wait()
            self._owner, self._depth = me, 1
        try:
            self._take_file()
        except BaseException:
            self._next()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._depth > 1:
            self._depth -= 1
            return
        try:
            if self._files is not None:
                fcntl.flock(self._files[0], fcntl.LOCK_UN)
        finally:
            self._next()

    def _next(self) -> None:
        with self._cond:
            self._owner, self._depth = None, 0
            self._serving += 1
            self._cond.notify_all()

    def _take_file(self) -> None:
        """This process's turn among processes. A process that just had the turn would win
        the race for the free lock against one the kernel is only waking, again and again:
        so while another process waits, this one lets it in first (for at most 0.1 s)."""
        if self._files is None:
            return
        turn, wait, _ = self._files
        polite_until = time.monotonic() + 0.1
        while self._another_process_waits() and time.monotonic() < polite_until:
            time.sleep(0.0002)
        try:
            fcntl.flock(turn, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another process writes: say so, and queue
            fcntl.flock(wait, fcntl.LOCK_SH)
            try:
                fcntl.flock(turn, fcntl.LOCK_EX)
            finally:
                fcntl.flock(wait, fcntl.LOCK_UN)

    def _another_process_waits(self) -> bool:
        assert self._files is not None
        probe = self._files[2]
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(probe, fcntl.LOCK_UN)
        return False

    def wanted(self) -> bool:
        """Another writer waits for the turn: a thread of this process, or another process."""
        with self._cond:
            if self._issued - self._serving > 1:
                return True
        return self._files is not None and self._another_process_waits()


def _open(path: str) -> int:
    """Read-only is enough for flock, so a worker running as another user that may write the
    database can open the lock files too."""
    return os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)


def _close(files: tuple[int, ...]) -> None:
    for fd in files:
        os.close(fd)


_TURNS: weakref.WeakValueDictionary[str, Turns] = weakref.WeakValueDictionary()
_TURNS_LOCK = threading.Lock()


def turns_for(database: str | None) -> Turns:
    """The one `Turns` of this process for a database file, shared by every Store on it
    while any of them is in use."""
    key = os.path.realpath(database) if database and database != ":memory:" else str(database)
    with _TURNS_LOCK:
        turns = _TURNS.get(key)
        if turns is None:
            turns = _TURNS[key] = Turns(database)
        return turns
