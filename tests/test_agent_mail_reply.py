"""Agents answer from their own mail client by replying to a notification."""

from __future__ import annotations

import email
import email.policy

import pytest
from sqlmodel import select

from storage.models import Agent, Comment, Ticket
from tests.conftest import customer_mail
from tests.test_pipeline import deliver


@pytest.fixture
def ticket(services) -> Ticket:
    row = deliver(services, customer_mail("Printer is on fire", "Room 4."))
    return services.store.ticket(row.ticket_id)


def agent_reply(services, ticket: Ticket, body: str, *, headers: bool = True):
    """The assignee answers the notification mail they got, quoting it as mail clients do."""
    note = next(m for m in services.store.outbox(ticket_id=ticket.id)
                if m.kind == "agent/ticket_assigned")
    sent = email.message_from_bytes(note.raw, policy=email.policy.default)
    with services.store.read() as s:
        agent = s.get(Agent, ticket.assignee_id)
    extra = {"In_Reply_To": f"<{note.message_id}>"} if headers else {}
    quoted = "\n".join("> " + line for line in
                       sent.get_body(("plain",)).get_content().splitlines())
    msg = customer_mail("Re: " + str(sent["Subject"]),
                        f"{body}\n\nOn Tue, 24 Nov 2026 at 10:00, Acme Support <support@acme.test> "
                        f"wrote:\n{quoted}\n",
                        sender=f"{agent.name} <{agent.email}>", **extra)
    return msg, agent


def comments(services, ticket_id):
    with services.store.read() as s:
        return list(s.exec(select(Comment).where(Comment.ticket_id == ticket_id)))


def test_an_agents_mailed_reply_is_posted_as_theirs_and_mailed_to_the_customer(services,
                                                                            ticket):
    msg, agent = agent_reply(services, ticket, "We are sending a technician today.")
    row = deliver(services, msg, mail_from=agent.email)
    assert row.outcome == "comment" and row.reason.startswith(f"agent reply by {agent.email}")
    [c] = comments(services, ticket.id)
    assert (c.author_kind, c.agent_id, c.internal) == ("agent", agent.id, False)
    assert c.body == "We are sending a technician today."  # quotes stripped
    [out] = [m for m in services.store.outbox(ticket_id=ticket.id)
             if m.kind == "customer/agent_reply"]
    assert out.rcpt_to == "jane@customer.test" and b"technician today" in out.raw


def test_internal_on_the_first_line_makes_it_a_note_that_never_leaves(services, ticket):
    msg, agent = agent_reply(services, ticket, "#internal\nCheck the warranty first.")
    row = deliver(services, msg, mail_from=agent.email)
    assert row.reason.startswith(f"internal note by {agent.email}")
    [c] = comments(services, ticket.id)
    assert c.internal and c.body == "Check the warranty first."
    assert not [m for m in services.store.outbox(ticket_id=ticket.id)
                if m.kind == "customer/agent_reply"]


def test_a_forged_agent_address_with_only_the_subject_is_held(services, ticket):
    msg, agent = agent_reply(services, ticket, "Refund approved, send your bank details.",
                             headers=False)
    row = deliver(services, msg, mail_from="attacker@evil.test")
    assert "held as internal note" in row.reason
    [c] = comments(services, ticket.id)
    assert c.internal and c.author_kind == "unverified" and c.agent_id is None
    assert not [m for m in services.store.outbox(ticket_id=ticket.id)
                if m.kind == "customer/agent_reply"]
