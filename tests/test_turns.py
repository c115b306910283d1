"""SQLite writers take turns across threads and processes, and a long writer sees who waits."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from storage.turns import Turns, turns_for

WAITER = """
import sys, time
from storage.turns import Turns
turns = Turns(sys.argv[1])
print("waiting", flush=True)
with turns:
    print("in", time.monotonic(), flush=True)
"""


def _eventually(check, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.01)
    return False


def test_another_process_waits_for_the_turn_and_is_seen_waiting(tmp_path: Path):
    db = str(tmp_path / "gateway.db")
    turns = Turns(db)
    with turns:
        waiter = subprocess.Popen([sys.executable, "-c", WAITER, db], stdout=subprocess.PIPE,
                                  text=True, cwd=Path(__file__).resolve().parents[1])
        assert waiter.stdout.readline().strip() == "waiting"
        assert _eventually(turns.wanted), "the waiting process is not seen"
        time.sleep(0.2)
        assert waiter.poll() is None  # still waiting: the turn is ours
        released = time.monotonic()
    line = waiter.stdout.readline().split()
    assert waiter.wait(10) == 0
    assert line[0] == "in"
    assert float(line[1]) - released < 1.0  # handed over, not found on a later try
    assert not turns.wanted()


def test_a_waiting_thread_is_seen_and_a_nested_turn_passes(tmp_path: Path):
    turns = turns_for(str(tmp_path / "gateway.db"))
    assert turns_for(str(tmp_path / "gateway.db")) is turns  # one per database per process
    got_in = threading.Event()

    def writer() -> None:
        with turns:
            got_in.set()

    with turns:
        with turns:  # the same thread, nested: no wait, and not taken for a waiting writer
            assert not turns.wanted()
        thread = threading.Thread(target=writer)
        thread.start()
        assert _eventually(turns.wanted)
        assert not got_in.is_set()
    thread.join(5)
    assert got_in.is_set()
    assert not turns.wanted()


def test_nobody_waiting_is_not_wanted(tmp_path: Path):
    turns = Turns(str(tmp_path / "gateway.db"))
    assert not turns.wanted()
    with turns:
        assert not turns.wanted()
