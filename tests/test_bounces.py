"""Bounces find the mail they refuse (VERP, or the quoted Message-ID), mark it, tell the agent;
automatic mail to one address stops at the hourly cap."""

from __future__ import annotations

import logging

import pytest
from sqlmodel import select

from gateway.outbound.verp import read_return_path, return_path
from storage.models import Comment, Notification, OutboundMessage, Ticket
from tests.conftest import customer_mail
from tests.test_pipeline import confirmation, deliver


@pytest.fixture
def ticket(services) -> Ticket:
    row = deliver(services, customer_mail("Printer is on fire", "Room 4.",
                                          sender="Jane <jane@gone.test>"),
                  mail_from="jane@gone.test")
    return services.store.ticket(row.ticket_id)


def dsn(original: OutboundMessage, *, to: str) -> bytes:
    """A delivery status notification as Postfix writes one (RFC 3464)."""
    quoted = original.raw.split(b"\r\n\r\n", 1)[0].decode()
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.gone.test>\r\n"
        f"To: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <dsn-1@mx.gone.test>\r\nAuto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your "
        "message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.gone.test\r\n\r\n"
        f"Final-Recipient: rfc822; {original.rcpt_to}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <jane@gone.test>: mailbox unknown\r\n"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\n{quoted}\r\n--B--\r\n"
    ).encode()


def verp(services, conf) -> str:
    """The envelope sender the outbox worker gives this mail (tests/test_outbox.py checks
    that it does, at a real relay)."""
    return return_path(services.settings.secret_key, conf.mail_from, conf.id)


def test_outbound_mail_names_itself_in_its_envelope_sender(services, ticket):
    conf = confirmation(services, ticket.id)
    assert conf.mail_from == "support@acme.test"  # the row keeps the plain sender
    assert read_return_path(services.settings.secret_key, verp(services, conf)) == conf.id
    forged = return_path("another-secret-key-123", "support@acme.test", conf.id)
    assert read_return_path(services.settings.secret_key, forged) is None


@pytest.mark.parametrize("via", ["verp", "quoted-message-id"])
def test_a_bounce_marks_the_mail_notes_the_ticket_and_tells_the_agent(services, ticket, via):
    conf = confirmation(services, ticket.id)
    rcpt = verp(services, conf) if via == "verp" else "support@acme.test"
    before = len(services.store.outbox())
    row = deliver(services, dsn(conf, to=rcpt), mail_from="", rcpt=(rcpt,))

    assert (row.outcome, row.classification, row.ticket_id) == ("ignored", "bounce", ticket.id)
    assert f"outbound mail #{conf.id}" in row.reason and "mailbox unknown" in row.reason
    with services.store.read() as s:
        out = s.get(OutboundMessage, conf.id)
        assert out.state == "bounced" and out.bounced_at is not None
        note = s.exec(select(Comment).where(Comment.ticket_id == ticket.id,
                                            Comment.author_kind == "system")).one()
        assert note.internal and "jane@gone.test bounced" in note.body
        alert = s.exec(select(Notification).where(Notification.kind == "bounce")).one()
        assert alert.agent_id == ticket.assignee_id and "TKT-0001" in alert.text
        assert s.get(Ticket, ticket.id).status == "open"  # a bounce never reopens or replies
    assert len(services.store.outbox()) == before  # and never causes mail


def test_a_bounce_to_a_forged_return_path_marks_nothing(services, ticket):
    conf = confirmation(services, ticket.id)
    forged = return_path("another-secret-key-123", "support@acme.test", conf.id)
    raw = dsn(conf, to=forged).replace(conf.message_id.encode(), b"someone-elses@mail.test")
    row = deliver(services, raw, mail_from="", rcpt=(forged,))
    assert row.outcome == "ignored" and row.classification == "bounce"
    with services.store.read() as s:
        assert s.get(OutboundMessage, conf.id).state != "bounced"


def test_no_address_gets_more_than_five_automatic_mails_an_hour(services, caplog):
    caplog.set_level(logging.WARNING, logger="workestra.outbox")
    for i in range(8):
        deliver(services, customer_mail(f"Question {i}", "Hello?",
                                        sender="Bot <bot@noisy.test>"), mail_from="bot@noisy.test")
    to_bot = [m for m in services.store.outbox() if m.rcpt_to == "bot@noisy.test"]
    assert len(to_bot) == services.settings.auto_mail_per_hour == 5
    assert len(services.store.tickets(services.store.workspace_by_slug("acme").id)) == 8
    held = [r for r in caplog.records if "bot@noisy.test" in r.getMessage()]
    assert len(held) == 1  # three held back, one warning: the log is not flooded


def test_agents_notifications_have_a_wider_brake_than_strangers(services):
    for i in range(14):
        deliver(services, customer_mail(f"Question {i}", "Hello?",
                                        sender=f"C{i} <c{i}@customer.test>"),
                mail_from=f"c{i}@customer.test")
    to_agents = [m.rcpt_to for m in services.store.outbox() if m.kind == "agent/ticket_assigned"]
    assert sorted(set(to_agents)) == ["alex@acme.test", "sam@acme.test"]
    assert to_agents.count("alex@acme.test") == 7  # more than 5 each, none held back
