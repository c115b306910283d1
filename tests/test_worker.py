"""`serve --no-worker` beside `workestra worker`: the front end only spools, the worker does the
rest; killing the worker mid-stream loses and duplicates nothing."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from sqlmodel import select

from storage.models import InboundMessage, Ticket
from tests.conftest import customer_mail, start_gateway, start_worker, stop_gateway


def wait_all_done(running, count: int, timeout: float = 60.0) -> list[InboundMessage]:
    svc = running.services()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with svc.store.read() as s:
                rows = list(s.exec(select(InboundMessage)))
            if len(rows) >= count and all(r.state == "done" for r in rows):
                return rows
            time.sleep(0.2)
        raise AssertionError(f"not all done: {[(r.id, r.state) for r in rows]}")
    finally:
        svc.close()


def test_a_separate_worker_processes_what_serve_spools_and_survives_a_kill(
        tmp_path, database_url, sink):
    front = start_gateway(tmp_path, database_url, sink.port, args=("--no-worker",))
    worker = start_worker(front)
    try:
        for i in range(20):
            front.send(customer_mail(f"Request {i}", "Hello.", sender=f"c{i}@customer.test"),
                       f"c{i}@customer.test",
                       ["support@acme.test"])
            if i == 9:
                worker.send_signal(signal.SIGKILL)  # mid-stream
                worker.wait(10)
                worker = start_worker(front, "worker2")
        rows = wait_all_done(front, 20)
        assert sorted(r.outcome for r in rows) == ["new_ticket"] * 20
        svc = front.services()
        try:
            with svc.store.read() as s:
                subjects = [t.subject for t in s.exec(select(Ticket))]
        finally:
            svc.close()
        assert sorted(subjects) == sorted(f"Request {i}" for i in range(20))  # once each
        for i in range(20):  # and each customer heard back, through the worker's outbox
            sink.wait_for(lambda m, i=i: f"c{i}@customer.test" in str(m["To"]), timeout=30)
    finally:
        worker.terminate()
        worker.wait(15)
        stop_gateway(front)
    assert "no background work here" in front.logs()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the same file either way
def test_the_health_check_tells_a_running_worker_from_a_stuck_or_stopped_one(
        tmp_path, database_url, sink):
    """`workestra worker --alive`, compose's health check: 0 while the worker's loop touches
    its heartbeat, 1 with the reason once it has not for a minute, or after it stopped."""
    front = start_gateway(tmp_path, database_url, sink.port, args=("--no-worker",))

    def check() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "gateway", "worker", "--alive"],
                              env=front.env, cwd=front.data_dir.parent, capture_output=True,
                              text=True, timeout=60)

    beat = front.data_dir / "run" / f"worker-{socket.gethostname()}.alive"
    worker = start_worker(front)
    try:
        deadline = time.monotonic() + 30
        while not beat.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert check().returncode == 0
        worker.send_signal(signal.SIGSTOP)  # a worker that no longer runs its loop
        then = time.time() - 120
        os.utime(beat, (then, then))  # ... for two minutes now
        stuck = check()
        assert stuck.returncode == 1
        assert re.search(r"has not answered for 1[23]\d s", stuck.stderr), stuck.stderr
        worker.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 30
        while check().returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert check().returncode == 0  # it touches the heartbeat again
    finally:
        worker.send_signal(signal.SIGCONT)
        worker.terminate()
        worker.wait(15)
        stop_gateway(front)
    gone = check()
    assert gone.returncode == 1 and "no worker is running" in gone.stderr
