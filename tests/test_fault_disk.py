"""The data disk fills up while mail arrives (issue 7): nothing answered 250 is lost, nothing
refused is half-recorded, and once space returns the sender's retry becomes exactly one ticket.

The disk is real: a small tmpfs mounted on the gateway's data dir and filled with a filler file
until the kernel answers ENOSPC. At acceptance the spool writes the raw bytes into the database
(gateway/inbound/spool.py); the blob store under the data dir gets them when the message is
processed. So on SQLite (its file lives in the data dir) a full disk must turn into a 4xx at
DATA; on PostgreSQL acceptance is durable elsewhere and a 250 is right, but processing must wait
for the blob store instead of deciding anything, and finish once space returns.
"""

from __future__ import annotations

import contextlib
import errno
import os
import smtplib
import subprocess
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from sqlmodel import select

from storage.models import InboundMessage, OutboundMessage, Ticket
from tests.conftest import Running, Sink, customer_mail, need_service, start_gateway, stop_gateway

DISK = "64m"  # room for the database, the blobs and a 4 MiB mail once the filler is gone
SENDER = "jane@customer.test"


@contextlib.contextmanager
def small_disk(path: Path) -> Iterator[Path]:
    """A tmpfs of DISK bytes on `path`, unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK},mode=0700", "tmpfs",
                               str(path)], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        need_service("no mount command to make a small disk")
    if done.returncode != 0:
        need_service(f"cannot mount a tmpfs here (root needed): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def fill(folder: Path) -> Path:
    """Writes a filler file until the disk says ENOSPC; removing it gives the space back."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    chunk = b"\0" * 65536
    try:
        while True:
            os.write(fd, chunk)  # a partial write, then ENOSPC on the next one
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)
    probe = folder / "probe"
    try:  # even one byte no longer fits (tmpfs may refuse the new file already)
        with open(probe, "wb") as f:
            f.write(b"x")
            f.flush()
        raise AssertionError("the disk is not full")
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
    finally:
        probe.unlink(missing_ok=True)
    return filler


def big_mail(data: Path) -> EmailMessage:
    """Larger than any slack SQLite's WAL file keeps from earlier writes, so that storing it
    needs space the disk no longer has (a smaller one could be stored durably in that slack,
    and then 250 would be the right answer)."""
    wal = data / "workestra.db-wal"
    size = max(2 << 20, (wal.stat().st_size if wal.exists() else 0) + (1 << 20))
    msg = customer_mail("Disk full order 7781", "Please see the attached log.",
                        sender=f"Jane Customer <{SENDER}>")
    lines = (os.urandom(38).hex() for _ in range(size // 77))  # 76 characters and a newline
    msg.add_attachment("\n".join(lines), filename="printer.log")
    return msg


def send(running: Running, raw: bytes) -> tuple[int, str]:
    """(code, text) of the answer to the end of DATA."""
    try:
        with smtplib.SMTP("127.0.0.1", running.smtp_port, timeout=60) as s:
            s.sendmail(SENDER, ["support@acme.test"], raw)
    except smtplib.SMTPDataError as e:
        return e.smtp_code, e.smtp_error.decode(errors="replace")
    return 250, "OK"


def stored(running: Running) -> tuple[list[InboundMessage], list[Ticket]]:
    svc = running.services()
    try:
        with svc.store.read() as s:
            return list(s.exec(select(InboundMessage))), list(s.exec(select(Ticket)))
    finally:
        svc.close()


def confirmations(sink: Sink) -> list[EmailMessage]:
    return [m for m in sink.to(SENDER) if "Disk full order 7781" in str(m["Subject"])]


def wait_for_one_ticket(running: Running, timeout: float = 30.0
                        ) -> tuple[list[InboundMessage], list[Ticket]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows, tickets = stored(running)
        if tickets and all(r.state == "done" for r in rows):
            return rows, tickets
        time.sleep(0.2)
    raise AssertionError("no ticket once space returned: " + running.logs()[-3000:])


def wait_for_log(running: Running, line: str, times: int, timeout: float = 30.0) -> None:
    """Until the gateway's log holds `line` at least `times` times."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running.logs().count(line) >= times:
            return
        time.sleep(0.1)
    raise AssertionError(f"{line!r} not logged {times} times: " + running.logs()[-3000:])


def wait_outbox_idle(running: Running, timeout: float = 30.0) -> None:
    """Until nothing is queued in the outbox: all the gateway meant to send has reached the
    sink (which has each mail before the gateway records it as sent)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        svc = running.services()
        try:
            with svc.store.read() as s:
                queued = list(s.exec(select(OutboundMessage)
                                     .where(OutboundMessage.state == "queued")))
        finally:
            svc.close()
        if not queued:
            return
        time.sleep(0.1)
    raise AssertionError(f"outbox never drained: {queued}" + running.logs()[-3000:])


def test_full_disk_never_acknowledges_and_the_retry_becomes_one_ticket(tmp_path, database_url,
                                                                     sink):
    on_sqlite = database_url.startswith("sqlite")
    with small_disk(tmp_path / "data") as data:
        running = start_gateway(tmp_path, database_url, sink.port)
        try:
            raw = big_mail(data).as_bytes(policy=SMTP)  # CRLF lines, as on the wire
            filler = fill(data)
            code, text = send(running, raw)
            if on_sqlite:
                # The database cannot take the bytes: refused, so the sender keeps the mail.
                assert code in (451, 452), (code, text)
                assert "database or disk is full" in running.logs()  # refused for that reason
                rows, tickets = stored(running)
                assert (rows, tickets) == ([], []), "a refused message was recorded"
            else:
                # Durable in PostgreSQL: 250 is true. The blob store is full, so the message
                # must wait, undecided (not `failed`), and send nothing yet.
                assert code == 250, (code, text)
                # Tried at once and again after RETRY_AFTER (2 s), both times on a full disk
                # (what a fixed 4 s wait made sure of: a third try races its end).
                wait_for_log(running, "store unavailable, retrying later", 2)
                rows, tickets = stored(running)
                assert [(r.state, r.outcome) for r in rows] == [("received", None)], rows
                assert tickets == [] and confirmations(sink) == []
                assert "No space left on device" in running.logs()
            assert running.proc.poll() is None, "the gateway died on a full disk"

            filler.unlink()  # space returns; the sender retries the same bytes, as MTAs do
            assert send(running, raw)[0] == 250
            rows, tickets = wait_for_one_ticket(running)
            sink.wait_for(lambda m: SENDER in str(m["To"])
                          and "Disk full order 7781" in str(m["Subject"]))
            # Both copies are decided (wait_for_one_ticket): a second confirmation would be
            # queued by now, in the same transaction; once the outbox is idle the sink has it.
            wait_outbox_idle(running)
        finally:
            stop_gateway(running)

    assert [t.subject for t in tickets] == ["Disk full order 7781"]
    assert len(confirmations(sink)) == 1
    outcomes = sorted((r.outcome or "", r.reason or "") for r in rows)
    if on_sqlite:  # only the accepted copy was ever recorded
        assert [o for o, _ in outcomes] == ["new_ticket"], outcomes
    else:  # the copy answered 250 made the ticket; the resent one is recognised as the same
        assert [o for o, _ in outcomes] == ["ignored", "new_ticket"], outcomes
        assert "duplicate" in outcomes[0][1], outcomes
