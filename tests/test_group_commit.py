"""Group commit: portal submissions that arrive together share a transaction, each still all
or nothing, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sqlmodel import select

from gateway.intake import Person, TicketRequest
from storage.models import OutboundMessage, Ticket


def _request(services, i: int) -> TicketRequest:
    ws = services.store.workspace_by_slug("acme")
    return TicketRequest(workspace_id=ws.id, customer=Person(f"Customer {i}",
                                                              f"c{i}@customer.test"),
                         subject=f"Question {i}", description="Hello", channel="portal")


def _open(services, i: int):
    return lambda s: services.intake.open_ticket(s, _request(services, i)).number


def _tickets(services) -> dict[str, int]:
    with services.store.read() as s:
        return {t.subject: t.number for t in s.exec(select(Ticket))}


def _queued_together(services, works) -> list:
    """Run `works` from threads of their own, all queued behind one slow transaction (as
    submissions queue behind a batch of inbound mail); each one's result or exception."""
    together = services.store.together
    started, go = threading.Event(), threading.Event()

    def slow(s):
        started.set()
        go.wait(10)

    with ThreadPoolExecutor(len(works) + 1) as pool:
        first = pool.submit(together.run, slow)
        started.wait(10)
        futures = [pool.submit(together.run, w) for w in works]
        deadline = time.monotonic() + 10
        while together.waiting < len(works) and time.monotonic() < deadline:
            time.sleep(0.005)
        go.set()
        first.result()
        return [f.exception() or f.result() for f in futures]


def test_submissions_that_arrive_together_commit_together(services):
    outcomes = _queued_together(services, [_open(services, i) for i in range(8)])
    assert sorted(outcomes) == list(range(1, 9))  # each got its own number
    assert services.store.together.batches == 1  # all eight in one transaction
    tickets = _tickets(services)
    assert sorted(tickets) == sorted(f"Question {i}" for i in range(8))
    with services.store.read() as s:  # each one's confirmation, in the same commit
        assert len([m for m in s.exec(select(OutboundMessage))
                    if m.kind == "customer/ticket_received"]) == 8


def test_a_failing_submission_spoils_none_of_the_ones_beside_it(services):
    def broken(s):
        services.intake.open_ticket(s, _request(services, 99))
        raise ValueError("the disk said no")

    works = [_open(services, 0), broken, _open(services, 1), _open(services, 2)]
    outcomes = _queued_together(services, works)
    assert isinstance(outcomes[1], ValueError)  # its caller hears of it
    assert sorted(o for o in outcomes if isinstance(o, int)) == [1, 2, 3]
    tickets = _tickets(services)
    assert "Question 99" not in tickets  # nothing of it was kept
    assert sorted(tickets.values()) == [1, 2, 3]  # and no number was skipped for it
    assert services.store.together.batches == 0  # the batch was undone, then each ran alone


def test_a_lone_submission_runs_on_its_own(services):
    assert services.store.together.run(_open(services, 0)) == 1
    assert services.store.together.batches == 0
    assert _tickets(services) == {"Question 0": 1}


def test_many_threads_submitting_at_once_each_get_one_ticket(services):
    with ThreadPoolExecutor(8) as pool:
        numbers = list(pool.map(lambda i: services.store.together.run(_open(services, i)),
                                range(40)))
    assert sorted(numbers) == list(range(1, 41))
    assert sorted(_tickets(services).values()) == list(range(1, 41))
