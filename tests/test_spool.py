"""The spool on a real store (SQLite and PostgreSQL): group commit, all-or-nothing, drain."""

from __future__ import annotations

import contextlib
import hashlib
import os
import smtplib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import event

from gateway.inbound.pipeline import ROW_RAW_MAX
from gateway.inbound.receive import ReceiveHandler
from gateway.inbound.spool import Spool, SpoolError
from tests.conftest import customer_mail, free_port

RCPT = ["support@acme.test"]


def raw_mail(i: int) -> bytes:
    return customer_mail(f"Message {i}", f"Body number {i}\n" * (1 + i % 7)).as_bytes()


@contextlib.contextmanager
def held_commits(engine) -> Iterator[tuple[threading.Event, threading.Event, list[int]]]:
    """Holds the spool's first commit until released, and counts the spool's commits."""
    entered, release, commits = threading.Event(), threading.Event(), []

    def on_commit(conn) -> None:
        if threading.current_thread().name != "spool-commit":
            return
        commits.append(1)
        entered.set()
        release.wait(30)

    event.listen(engine, "commit", on_commit)
    try:
        yield entered, release, commits
    finally:
        release.set()
        event.remove(engine, "commit", on_commit)


def test_concurrent_accepts_get_distinct_rows_with_their_exact_bytes(services):
    spool = Spool(services.store, services.blobs)
    raws = [raw_mail(i) for i in range(40)]
    start = threading.Barrier(len(raws))

    def accept(raw: bytes) -> int:
        start.wait()
        return spool.accept(raw, mail_from="jane@customer.test", rcpt_tos=RCPT)

    with ThreadPoolExecutor(max_workers=len(raws)) as pool:
        ids = list(pool.map(accept, raws))
    spool.close()
    assert len(set(ids)) == len(raws)
    for inbound_id, raw in zip(ids, raws, strict=True):
        row = services.store.inbound(inbound_id)
        assert row.raw == raw and row.size == len(raw)
        assert row.raw_sha256 == hashlib.sha256(raw).hexdigest()
        assert (row.state, row.channel, row.rcpt_tos) == ("received", "smtp", RCPT[0])
    assert services.store.pending_inbound() == sorted(ids)


def test_messages_waiting_during_a_commit_share_the_next_one(services):
    spool = Spool(services.store, services.blobs)
    with held_commits(services.engine) as (entered, release, commits):
        first = spool.submit(raw_mail(0), mail_from="a@customer.test", rcpt_tos=RCPT)
        assert entered.wait(30)
        rest = [spool.submit(raw_mail(i), mail_from="a@customer.test", rcpt_tos=RCPT)
                for i in range(1, 30)]
        assert not first.done()  # nobody hears back before the commit returned
        release.set()
        ids = [f.result(30) for f in [first, *rest]]
    spool.close()
    assert len(set(ids)) == 30
    assert len(commits) == 2  # one for the first message, one for the 29 that queued behind it


def test_a_failed_commit_fails_every_message_of_its_batch_and_records_none(services):
    spool = Spool(services.store, services.blobs)
    with held_commits(services.engine) as (entered, release, _):
        blocker = spool.submit(raw_mail(0), mail_from="a@customer.test", rcpt_tos=RCPT)
        assert entered.wait(30)
        good = [spool.submit(raw_mail(i), mail_from="b@customer.test", rcpt_tos=RCPT)
                for i in range(1, 6)]
        # An IMAP inbox that does not exist: the foreign key fails the whole transaction.
        bad = spool.submit(raw_mail(6), mail_from="b@customer.test", rcpt_tos=RCPT,
                           channel="imap", imap_inbox_id=999_999)
        release.set()
        assert blocker.result(30)
        for future in [*good, bad]:
            with pytest.raises(SpoolError):
                future.result(30)
    assert [r.mail_from for r in services.store.inbound_messages()] == ["a@customer.test"]
    # The spool goes on working after a failed batch.
    later = spool.accept(raw_mail(7), mail_from="c@customer.test", rcpt_tos=RCPT)
    assert services.store.inbound(later).mail_from == "c@customer.test"
    spool.close()


def test_close_commits_what_is_waiting_and_refuses_more(services):
    spool = Spool(services.store, services.blobs)
    with held_commits(services.engine) as (entered, release, _):
        raws = [raw_mail(i) for i in range(10)]
        futures = [spool.submit(raws[0], mail_from="a@customer.test", rcpt_tos=RCPT)]
        assert entered.wait(30)
        futures += [spool.submit(raw, mail_from="a@customer.test", rcpt_tos=RCPT)
                    for raw in raws[1:]]
        closer = threading.Thread(target=spool.close)
        closer.start()
        release.set()
        closer.join(30)
    assert not closer.is_alive()
    ids = [f.result(0) for f in futures]
    assert [services.store.inbound(i).raw for i in ids] == raws
    with pytest.raises(SpoolError):
        spool.accept(raw_mail(11), mail_from="a@customer.test", rcpt_tos=RCPT)


def test_imap_messages_keep_their_inbox(services):
    from storage.models import ImapInbox

    with services.store.tx() as s:
        inbox = ImapInbox(workspace_id=services.store.workspace_by_slug("acme", s).id,
                          host="imap.acme.test", username="support", password="x")
        s.add(inbox)
        s.flush()
        inbox_id = inbox.id
    spool = Spool(services.store, services.blobs)
    inbound_id = spool.accept(raw_mail(1), mail_from="jane@customer.test", rcpt_tos=RCPT,
                              channel="imap", imap_inbox_id=inbox_id)
    spool.close()
    row = services.store.inbound(inbound_id)
    assert (row.channel, row.imap_inbox_id) == ("imap", inbox_id)


def test_processing_keeps_small_mail_in_its_row_and_moves_large_mail_to_the_blob_store(
        services):
    spool = Spool(services.store, services.blobs)
    small = customer_mail("Printer on fire", "Room 4, again.")
    large = customer_mail("Scans attached", "See the scan.", sender="bob@customer.test")
    large.add_attachment(os.urandom(ROW_RAW_MAX), maintype="application", subtype="pdf",
                         filename="scan.pdf")
    raws = [small.as_bytes(), large.as_bytes()]
    ids = [spool.accept(raw, mail_from="jane@customer.test", rcpt_tos=RCPT) for raw in raws]
    spool.close()
    digests = [services.store.inbound(i).raw_sha256 for i in ids]
    assert not any(map(services.blobs.exists, digests))  # durable in the rows alone, so far
    services.pipeline.process_batch(ids)
    rows = [services.store.inbound(i) for i in ids]
    assert [(r.state, r.outcome) for r in rows] == [("done", "new_ticket")] * 2
    assert rows[0].raw == raws[0] and not services.blobs.exists(digests[0])
    assert rows[1].raw is None and services.blobs.get(digests[1]) == raws[1]
    assert [services.store.inbound_raw(i, services.blobs) for i in ids] == raws
    ticket = services.store.ticket(rows[0].ticket_id)
    assert ticket.subject == "Printer on fire"


def test_smtp_answers_451_when_the_message_cannot_be_spooled(services):
    spool = Spool(services.store, services.blobs)
    spooled: list[int] = []
    handler = ReceiveHandler(services.store, spool, spooled.append)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            smtp.sendmail("jane@customer.test", RCPT, raw_mail(1))
            spool.close()
            with pytest.raises(smtplib.SMTPDataError) as err:
                smtp.sendmail("jane@customer.test", RCPT, raw_mail(2))
        assert err.value.smtp_code == 451
    finally:
        controller.stop()
    assert [r.id for r in services.store.inbound_messages()] == spooled
    assert len(spooled) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_busy_sqlite_writer_delays_the_spool_but_does_not_fail_it(services):
    """The spool waits for the write lock in short steps of its own, not SQLite's long sleeps."""
    from sqlalchemy import text

    spool = Spool(services.store, services.blobs)
    spool.accept(raw_mail(0), mail_from="a@customer.test", rcpt_tos=RCPT)  # committer is up
    holding, release = threading.Event(), threading.Event()

    def other_writer() -> None:
        with services.store.tx() as s:
            s.exec(text("UPDATE workspace SET name = name"))
            holding.set()
            release.wait(30)

    writer = threading.Thread(target=other_writer)
    writer.start()
    assert holding.wait(30)
    future = spool.submit(raw_mail(1), mail_from="b@customer.test", rcpt_tos=RCPT)
    release.wait(0.3)
    assert not future.done()  # no id, so no 250, while the row cannot be committed
    release.set()
    writer.join(30)
    assert services.store.inbound(future.result(30)).mail_from == "b@customer.test"
    spool.close()


def test_the_spool_says_it_is_busy_while_mail_comes_in_and_not_after(services):
    """The in-process processor gives way while this is true (tests/test_processor.py)."""
    spool = Spool(services.store, services.blobs, recent=0.3)
    try:
        assert not spool.busy()
        spool.accept(raw_mail(1), mail_from="a@customer.test", rcpt_tos=RCPT)
        assert spool.busy()  # committed, but the next message of a stream is likely close
        time.sleep(0.4)
        assert not spool.busy()
    finally:
        spool.close()
