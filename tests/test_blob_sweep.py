"""`workestra blobs sweep` and the worker's sweep: files no row refers to go once they are old,
referenced and recent ones stay, and a put racing the sweep never loses its file.

Real files under the data directory and a real database (SQLite, and PostgreSQL when
WORKESTRA_TEST_POSTGRES is set); a file is made old by setting its mtime back."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlmodel import delete, update

from gateway import worker
from gateway.cli import main
from gateway.intake import NewFile, Person, TicketRequest
from storage import blob_sweep
from storage.blob_sweep import remove_if_old, sweep
from storage.blobs import sha256_hex
from storage.models import InboundMessage

HOUR = 3600


def age(path: Path, hours: float = 72) -> None:
    then = time.time() - hours * HOUR
    os.utime(path, (then, then))


def orphan(services, data: bytes, hours: float = 72) -> Path:
    """Bytes stored with no row referring to them, as a form never sent again leaves them."""
    path = services.blobs.path(services.blobs.put(data))
    age(path, hours)
    return path


def attached(services, data: bytes) -> Path:
    """A file attached to a new ticket (an Attachment row), made old."""
    ws = services.store.workspace_by_slug("acme")
    with services.store.tx() as s:
        services.intake.open_ticket(s, TicketRequest(
            workspace_id=ws.id, customer=Person("Jane", "jane@customer.test"),
            subject="Invoice", description="See the file.", channel="portal",
            files=[NewFile("invoice.pdf", "application/pdf", data)]))
    path = services.blobs.path(sha256_hex(data))
    age(path)
    return path


def received(services, raw: bytes) -> Path:
    """Raw mail in the blob store with its InboundMessage row, made old."""
    digest = services.blobs.put(raw)
    services.store.record_inbound(raw_sha256=digest, size=len(raw),
                                  mail_from="jane@customer.test", rcpt_tos=["support@acme.test"])
    path = services.blobs.path(digest)
    age(path)
    return path


@pytest.fixture(autouse=True)
def mail_received_before(services):
    """A gateway in use: its database refers to files already (a sweep with a database that
    refers to none stops, see the last test). This row's file is not on disk."""
    services.store.record_inbound(raw_sha256="0" * 64, size=1, mail_from="a@customer.test",
                                  rcpt_tos=["support@acme.test"])
    with services.store.tx() as s:
        s.exec(update(InboundMessage).values(state="done", outcome="ignored", reason="test"))


def test_an_old_orphan_is_removed_and_its_bytes_counted(services):
    path = orphan(services, b"x" * 3000)
    result = sweep(services.store, services.blobs)
    assert not path.exists()
    assert (result.removed, result.bytes_freed) == (1, 3000)
    assert services.blobs.root.is_dir()


def test_old_files_an_attachment_or_a_message_refers_to_are_kept(services):
    pdf = attached(services, b"%PDF-1.4 the invoice")
    mail = received(services, b"From: jane@customer.test\r\n\r\nHello\r\n")
    gone = orphan(services, b"nobody's")
    result = sweep(services.store, services.blobs)
    assert pdf.read_bytes() == b"%PDF-1.4 the invoice"
    assert mail.exists()
    assert not gone.exists()
    assert (result.referenced, result.removed) == (2, 1)


def test_a_recent_orphan_is_kept(services):
    fresh = orphan(services, b"uploaded an hour ago", hours=1)
    day_old = orphan(services, b"kept for a form sent back yesterday", hours=24)
    result = sweep(services.store, services.blobs)
    assert fresh.exists() and day_old.exists()
    assert result.removed == 0 and result.recent >= 2


def test_a_dry_run_removes_nothing_but_says_what_it_would_free(services):
    path = orphan(services, b"y" * 2048)
    result = sweep(services.store, services.blobs, dry_run=True)
    assert path.exists()
    assert (result.removed, result.bytes_freed) == (1, 2048)
    assert result.summary().startswith("dry run: would remove 1 unreferenced file (2.0 KB)")
    assert sweep(services.store, services.blobs).removed == 1
    assert not path.exists()


def test_storing_the_same_bytes_again_makes_an_old_orphan_survive(services):
    path = orphan(services, b"the same logo, attached again")
    assert services.blobs.put(b"the same logo, attached again") == path.name
    assert time.time() - path.stat().st_mtime < 60  # young again
    result = sweep(services.store, services.blobs)
    assert path.read_bytes() == b"the same logo, attached again"
    assert result.removed == 0


def test_a_put_just_before_the_rename_gets_its_file_back(services, monkeypatch):
    """The sweep listed the file as old and found no row; then a put (whose row is about to
    commit) touched it, before the sweep's per-file step renamed it."""
    data = b"attached again while the sweep ran"
    path = orphan(services, data)
    real = blob_sweep.remove_if_old

    def put_first(p: Path, cutoff: float) -> int | None:
        services.blobs.put(data)
        return real(p, cutoff)

    monkeypatch.setattr(blob_sweep, "remove_if_old", put_first)
    result = sweep(services.store, services.blobs)
    assert path.read_bytes() == data
    assert (result.removed, result.restored) == (0, 1)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no trash left behind
    # and the step alone, on a file whose mtime a put just refreshed
    assert remove_if_old(path, cutoff=time.time() - 48 * HOUR) is None
    assert path.read_bytes() == data


def test_a_put_just_after_the_rename_writes_the_file_anew(services, monkeypatch):
    data = b"attached again the moment the sweep took it"
    path = orphan(services, data)
    rename = os.rename

    def then_put(src, dst):
        rename(src, dst)
        if Path(src) == path:
            assert services.blobs.put(data) == path.name  # finds nothing: writes it again

    monkeypatch.setattr(blob_sweep.os, "rename", then_put)
    result = sweep(services.store, services.blobs)
    assert path.read_bytes() == data
    assert result.removed == 1  # the old copy
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_leftovers_of_an_interrupted_put_or_sweep(services):
    kept = orphan(services, b"content a sweep was deciding on when it stopped", hours=1)
    folder = kept.parent
    trash = folder / f".sweep-0badf00d-{kept.name}"
    kept.rename(trash)
    age(trash)
    old_tmp, new_tmp = folder / ".tmp-old", folder / ".tmp-writing"
    old_tmp.write_bytes(b"z" * 100)
    new_tmp.write_bytes(b"being written")
    age(old_tmp)
    result = sweep(services.store, services.blobs)
    assert kept.exists() and not trash.exists()  # put back, to be judged a sweep later
    assert not old_tmp.exists() and new_tmp.exists()
    assert result.leftovers == 1 and result.removed == 0


def _cli(services, monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    for name in list(os.environ):
        if name.startswith("WORKESTRA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", services.settings.database_url)
    monkeypatch.setenv("WORKESTRA_SECRET_KEY", services.settings.secret_key)
    capsys.readouterr()
    code = main(["blobs", "sweep", *args, "--data-dir", str(services.settings.data_dir)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_command_says_what_it_removed_and_kept(services, monkeypatch, capsys):
    pdf = attached(services, b"%PDF-1.4 kept")
    gone = orphan(services, b"o" * 1536)
    recent = orphan(services, b"sent back with an error an hour ago", hours=1)
    env = {"DATABASE_URL": services.settings.database_url,
           "WORKESTRA_SECRET_KEY": services.settings.secret_key, "PATH": "/usr/bin:/bin"}
    # a real process first, as a shell runs it: the dry run
    proc = subprocess.run([sys.executable, "-m", "gateway", "blobs", "sweep", "--dry-run",
                           "--data-dir", str(services.settings.data_dir)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ("dry run: would remove 1 unreferenced file (1.5 KB); "
                           "kept 1 referenced, 1 recent\n")
    assert gone.exists()

    code, out, _ = _cli(services, monkeypatch, capsys)
    assert code == 0
    assert out == "removed 1 unreferenced file (1.5 KB); kept 1 referenced, 1 recent\n"
    assert pdf.exists() and recent.exists() and not gone.exists()


def test_the_command_refuses_a_cutoff_under_an_hour(services, monkeypatch, capsys):
    path = orphan(services, b"written a minute ago, its row about to commit", hours=1 / 60)
    with pytest.raises(SystemExit) as refused:
        _cli(services, monkeypatch, capsys, "--older-than", "0.01")
    assert refused.value.code == 2
    assert "at least 1 hour" in capsys.readouterr().err
    assert path.exists()


def test_the_worker_sweeps_and_a_failed_sweep_does_not_stop_it(services, monkeypatch, caplog):
    path = orphan(services, b"left by a form never sent again")
    calls = []

    def flaky(store, blobs):
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk gone for a moment")
        return sweep(store, blobs)

    monkeypatch.setattr(worker, "SWEEP_FIRST", 0.0)
    monkeypatch.setattr(worker, "SWEEP_EVERY", 0.05)
    monkeypatch.setattr(worker, "sweep", flaky)

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.sweep_blobs(services.store, services.blobs, stop))
        deadline = time.monotonic() + 10
        while path.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 5)

    with caplog.at_level(logging.INFO, logger="workestra"):
        asyncio.run(run())
    assert not path.exists()
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("blob sweep failed") for m in messages)
    assert "blob sweep: removed 1 unreferenced file" in "\n".join(messages)


def test_a_database_that_refers_to_no_file_at_all_removes_nothing(services, monkeypatch,
                                                                  capsys):
    """Old files and a database without one message or attachment: most likely a mistyped
    DATABASE_URL (another, empty database), so the sweep stops instead of emptying the store."""
    with services.store.tx() as s:
        s.exec(delete(InboundMessage))
    path = orphan(services, b"a customer's file, with the wrong database")
    with pytest.raises(blob_sweep.WrongDatabase):
        sweep(services.store, services.blobs)
    assert path.exists()
    code, _, err = _cli(services, monkeypatch, capsys)
    assert code == 1 and path.exists()
    assert "is DATABASE_URL the database these files belong to" in err
