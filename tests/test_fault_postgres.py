"""PostgreSQL restarted in the middle of a stream of SMTP deliveries: every message answered
250 ends as exactly one outcome, nothing answered during the outage is acknowledged falsely,
and a sender that retries on 4xx (as every MTA does) loses nothing."""

from __future__ import annotations

import os
import shutil
import smtplib
import subprocess
import threading
import time

from sqlmodel import select

from storage.models import InboundMessage, Ticket
from tests.conftest import customer_mail, need_service, start_gateway, stop_gateway


def restart_postgres() -> None:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions or shutil.which("pg_ctlcluster") is None:
        need_service("pg_ctlcluster not available to restart PostgreSQL")
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main",
                    "restart", "--", "-m", "fast"], check=True, timeout=60)


def send_with_retries(port: int, subject: str, sender: str, deadline: float) -> int:
    """Deliver like an MTA: the same bytes again on 4xx and dropped connections (so a message
    whose 250 was lost in transit comes back with its Message-ID); returns the tries used."""
    raw = customer_mail(subject, "Hello.", sender=sender).as_bytes()
    tries = 0
    while time.monotonic() < deadline:
        tries += 1
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
                s.sendmail(sender, ["support@acme.test"], raw)
            return tries
        except (smtplib.SMTPException, OSError):
            time.sleep(0.2)
    raise AssertionError(f"{subject} never accepted")


def test_a_postgres_restart_mid_stream_loses_and_duplicates_nothing(tmp_path, postgres_url, sink):
    running = start_gateway(tmp_path, postgres_url, sink.port)
    deadline = time.monotonic() + 120
    tries: dict[str, int] = {}
    try:
        def stream(start: int) -> None:
            for i in range(start, start + 40):
                tries[f"Request {i}"] = send_with_retries(
                    running.smtp_port, f"Request {i}", f"c{i}@customer.test", deadline)
                # Paced so that the stream (2 s and more) outlasts the restart (about 2.5 s
                # here, begun after 10 mails): unpaced, all 80 were in before PostgreSQL
                # went down, and the test saw no outage at all.
                time.sleep(0.05)

        threads = [threading.Thread(target=stream, args=(k * 40,)) for k in range(2)]
        for t in threads:
            t.start()
        while len(tries) < 10 and time.monotonic() < deadline:  # mid-stream
            time.sleep(0.01)
        restart_postgres()
        for t in threads:
            t.join()
        svc = running.services()
        try:
            while time.monotonic() < deadline:
                with svc.store.read() as s:
                    rows = list(s.exec(select(InboundMessage)))
                if len(rows) >= 80 and all(r.state == "done" for r in rows):
                    break
                time.sleep(0.1)
            with svc.store.read() as s:
                subjects = sorted(t.subject for t in s.exec(select(Ticket)))
        finally:
            svc.close()
    finally:
        stop_gateway(running)
    assert len(tries) == 80
    assert all(r.state == "done" for r in rows)
    extra = [r for r in rows if r.outcome != "new_ticket"]  # only a resent copy may be extra
    assert all(r.outcome == "ignored" and "duplicate" in r.reason for r in extra), extra
    assert subjects == sorted(f"Request {i}" for i in range(80))  # each exactly once
