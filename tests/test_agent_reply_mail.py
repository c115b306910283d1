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


def test_names_subjects_and_filenames_outside_ascii_survive_the_trip():
    from gateway.outbound.compose import compose
    from gateway.outbound.render import Rendered

    msg = compose(Rendered("[TKT-0042] Drucker brennt — Ärger", "Hallo Jürgen,\n\nerledigt.",
                           "<p>Hallo Jürgen</p>"),
                  from_name="Acme Süpport", from_address="support@acme.test",
                  to_name="Jürgen Ödegaard", to_address="j@customer.test",
                  message_id="m1@acme.test", loop_marker="workestra-x",
                  attachments=[("Übersicht.pdf", "application/pdf", PDF)])
    raw = msg.as_bytes()
    assert raw.isascii()  # 7-bit clean on the wire
    back = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(back["Subject"]) == "[TKT-0042] Drucker brennt — Ärger"
    assert back["From"].addresses[0].display_name == "Acme Süpport"
    assert back["To"].addresses[0].display_name == "Jürgen Ödegaard"
    assert "Hallo Jürgen," in back.get_body(("plain",)).get_content()
    [part] = list(back.iter_attachments())
    assert part.get_filename() == "Übersicht.pdf" and part.get_content() == PDF
