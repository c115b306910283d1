"""Ticket numbers are sequential per workspace and never duplicated, even under concurrency."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlmodel import select

from gateway.intake import Person, TicketRequest
from storage.models import OutboundMessage, Ticket, Workspace


def _open(services, ws_id: int, i: int) -> str:
    with services.store.tx() as s:
        t = services.intake.open_ticket(s, TicketRequest(
            workspace_id=ws_id, customer=Person(f"Customer {i}", f"c{i}@example.test"),
            subject=f"Request {i}", description="Please help", channel="portal"))
        return t.reference


def test_fifty_concurrent_creators_get_fifty_distinct_sequential_numbers(services):
    ws = services.store.workspace_by_slug("acme")
    with ThreadPoolExecutor(max_workers=50) as pool:
        refs = list(pool.map(lambda i: _open(services, ws.id, i), range(50)))
    assert sorted(refs) == [f"TKT-{n:04d}" for n in range(1, 51)]
    with services.store.tx() as s:
        numbers = s.exec(select(Ticket.number).where(Ticket.workspace_id == ws.id)).all()
        confirmations = s.exec(select(OutboundMessage).where(
            OutboundMessage.kind == "customer/ticket_received")).all()
    assert sorted(numbers) == list(range(1, 51))
    assert len(confirmations) == 50  # each ticket's confirmation committed with it


def test_numbers_are_per_workspace(services):
    acme = services.store.workspace_by_slug("acme")
    with services.store.tx() as s:
        other = Workspace(slug="globex", name="Globex")
        s.add(other)
        s.flush()
        other_id = other.id
    assert _open(services, acme.id, 1) == "TKT-0001"
    assert _open(services, other_id, 2) == "TKT-0001"
    assert _open(services, acme.id, 3) == "TKT-0002"


def test_each_confirmation_is_sent_from_its_own_workspaces_first_address(services):
    """The number and the sender are read in one statement: each workspace's own, the
    first-added of several, and a made-up one for a workspace without any."""
    acme = services.store.workspace_by_slug("acme")
    with services.store.tx() as s:
        first, bare = Workspace(slug="globex", name="Globex"), Workspace(slug="bare", name="Bare")
        s.add_all([first, bare])
        s.flush()
        globex_id, bare_id = first.id, bare.id
        services.store.add_support_address(s, globex_id, "help@globex.test")
        services.store.add_support_address(s, globex_id, "sales@globex.test")
    with services.store.tx() as s:  # one transaction, as a batch of mail is
        for i, ws_id in enumerate((globex_id, acme.id, bare_id, globex_id)):
            services.intake.open_ticket(s, TicketRequest(
                workspace_id=ws_id, customer=Person(f"C {i}", f"c{i}@example.test"),
                subject=f"Request {i}", description="Please help", channel="portal"))
    with services.store.tx() as s:
        senders = [(m.rcpt_to, m.mail_from) for m in s.exec(select(OutboundMessage).where(
            OutboundMessage.kind == "customer/ticket_received").order_by(OutboundMessage.id))]
    acme_sender = services.store.support_addresses(None, acme.id)[0]
    assert senders == [("c0@example.test", "help@globex.test"),
                       ("c1@example.test", acme_sender),
                       ("c2@example.test", "support@bare.invalid"),
                       ("c3@example.test", "help@globex.test")]


def test_round_robin_spreads_tickets_over_available_agents(services):
    ws = services.store.workspace_by_slug("acme")
    for i in range(4):
        _open(services, ws.id, i)
    with services.store.tx() as s:
        assignees = [t.assignee_id for t in s.exec(select(Ticket).order_by(Ticket.number))]
    assert None not in assignees
    assert assignees[0] != assignees[1] and assignees[0] == assignees[2]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_transaction_holding_rows_of_the_workspace_and_a_new_ticket_do_not_deadlock(services):
    """The worker's inbound batch inserts rows that reference the workspace (PostgreSQL takes
    a KEY SHARE lock on it) and later opens a ticket; a portal submission opening a ticket
    meanwhile must wait its turn, not deadlock with it (found by bench/soak.py)."""
    ws = services.store.workspace_by_slug("acme")
    holding = threading.Event()

    def batch() -> str:
        with services.store.tx() as s:
            services.store.upsert_contact(s, ws.id, "early@example.test", "Early")
            holding.set()
            time.sleep(1.0)  # the submission reaches the workspace lock meanwhile
            return services.intake.open_ticket(s, TicketRequest(
                workspace_id=ws.id, customer=Person("Early", "early@example.test"),
                subject="From the batch", description="x")).reference

    def submission() -> str:
        assert holding.wait(10)
        return _open(services, ws.id, 99)

    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.submit(batch), pool.submit(submission)
        refs = sorted([first.result(timeout=30), second.result(timeout=30)])
    assert refs == ["TKT-0001", "TKT-0002"]
