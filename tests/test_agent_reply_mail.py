"""An agent's reply reaches the customer with its files attached, not just named."""

from __future__ import annotations

import email
import email.policy

from gateway.agent_actions import AgentActions
from gateway.intake import NewFile
from storage.models import Agent
from tests.conftest import customer_mail
from tests.test_pipeline import deliver

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def test_the_reply_mail_carries_the_files_and_still_threads(services):
    row = deliver(services, customer_mail("Invoice please", "Can I have my invoice?"))
    actions = AgentActions(services.store, services.blobs, services.mailer)
    with services.store.tx() as s:
        ticket = services.store.ticket(row.ticket_id, s=s)
        agent = s.get(Agent, ticket.assignee_id)
        actions.reply(s, ticket, agent, "Here it is.",
                      files=[NewFile("invoice 42.pdf", "application/pdf", PDF)])
    [out] = [m for m in services.store.outbox(ticket_id=row.ticket_id)
             if m.kind == "customer/agent_reply"]
    msg = email.message_from_bytes(out.raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/mixed"
    assert "Here it is." in msg.get_body(("plain",)).get_content()
    [part] = list(msg.iter_attachments())
    assert part.get_filename() == "invoice 42.pdf" and part.get_content() == PDF
    assert msg["In-Reply-To"] and "Auto-Submitted" not in msg  # a person wrote it
