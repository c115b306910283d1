"""The inbound pipeline on a real store (SQLite and PostgreSQL): one outcome per message."""

from __future__ import annotations

import hashlib
from email.message import EmailMessage

import pytest
from sqlmodel import select

from gateway.inbound.pipeline import STEPS, Pipeline
from gateway.inbound.spool import Spool
from storage.models import Attachment, Comment, InboundMessage, OutboundMessage, Ticket
from storage.store import held
from tests.conftest import customer_mail


def deliver(services, msg: EmailMessage | bytes, *, mail_from="jane@customer.test",
            rcpt=("support@acme.test",)) -> InboundMessage:
    raw = msg if isinstance(msg, bytes) else msg.as_bytes()
    inbound_id = Spool(services.store, services.blobs).accept(
        raw, mail_from=mail_from, rcpt_tos=list(rcpt))
    services.pipeline.process(inbound_id)
    row = services.store.inbound(inbound_id)
    assert row.state == "done" and row.outcome and row.reason
    return row


def confirmation(services, ticket_id: int) -> OutboundMessage:
    return next(m for m in services.store.outbox(ticket_id=ticket_id)
                if m.kind == "customer/ticket_received")


def reply_to(services, ticket_id: int, body: str, *, sender="Jane Customer <jane@customer.test>",
             headers=True, to=None, subject=None) -> EmailMessage:
    conf = confirmation(services, ticket_id)
    import email
    import email.policy

    sent = email.message_from_bytes(conf.raw, policy=email.policy.default)
    extra = {"In_Reply_To": f"<{conf.message_id}>", "References": f"<{conf.message_id}>"} \
        if headers else {}
    return customer_mail(subject or "Re: " + str(sent["Subject"]), body, sender=sender,
                         to=to or "support@acme.test", **extra)


@pytest.fixture
def ticket(services) -> Ticket:
    row = deliver(services, customer_mail("Printer is on fire", "The printer in room 4 burns."))
    assert row.outcome == "new_ticket"
    return services.store.ticket(row.ticket_id)


def test_new_mail_opens_a_ticket_for_the_sender_and_queues_a_confirmation(services, ticket):
    contact = services.store.contact(ticket.contact_id)
    assert (ticket.reference, ticket.status, ticket.priority, ticket.channel) == (
        "TKT-0001", "open", "medium", "email")
    assert contact.email == "jane@customer.test" and contact.name == "Jane Customer"
    assert ticket.assignee_id is not None and ticket.sentiment < 0  # "burns" reads as negative
    kinds = sorted(m.kind for m in services.store.outbox(ticket_id=ticket.id))
    assert kinds == ["agent/ticket_assigned", "customer/ticket_received"]


def test_reply_threads_by_our_message_id_and_keeps_only_new_text(services, ticket):
    body = ("Still burning.\n\nOn Tue, 24 Nov 2026 at 10:00, Acme Support wrote:\n"
            "> Thank you for contacting Acme Support.\n> We opened TKT-0001.\n")
    row = deliver(services, reply_to(services, ticket.id, body, subject="Something else"))
    assert (row.outcome, row.thread_method, row.ticket_id) == ("comment", "headers", ticket.id)
    [comment] = services.store.public_comments(ticket.id)
    assert comment.body.strip() == "Still burning."


def test_reply_threads_by_signed_reply_address(services, ticket):
    conf = confirmation(services, ticket.id)
    import email
    import email.policy

    reply_addr = email.message_from_bytes(conf.raw, policy=email.policy.default)["Reply-To"]
    address = reply_addr.addresses[0].addr_spec
    assert address.startswith("support+t")
    msg = reply_to(services, ticket.id, "Any news?", headers=False, to=address, subject="Hello")
    row = deliver(services, msg, rcpt=[address])
    assert (row.outcome, row.thread_method, row.ticket_id) == ("comment", "token", ticket.id)


def test_reply_threads_by_reference_in_subject(services, ticket):
    msg = customer_mail("AW: [TKT-0001] Printer is on fire", "Here is a photo.")
    row = deliver(services, msg)
    assert (row.outcome, row.thread_method, row.ticket_id) == ("comment", "subject", ticket.id)


def test_a_stranger_replying_in_the_thread_is_held_not_posted(services, ticket):
    msg = reply_to(services, ticket.id, "Close this ticket please.",
                   sender="Mallory <mallory@evil.test>")
    row = deliver(services, msg, mail_from="mallory@evil.test")
    assert row.outcome == "comment" and "held" in row.reason
    assert services.store.public_comments(ticket.id) == []
    [held] = services.store.comments(ticket.id)
    assert held.internal and held.author_email == "mallory@evil.test" and held.held_reason


def test_a_stranger_naming_a_ticket_number_gets_a_ticket_of_their_own(services, ticket):
    msg = customer_mail("Same problem as TKT-0001", "Our printer burns too.",
                        sender="Bob <bob@other.test>")
    row = deliver(services, msg, mail_from="bob@other.test")
    assert row.outcome == "new_ticket" and row.ticket_id != ticket.id
    assert services.store.comments(ticket.id) == []
    assert services.store.contact(services.store.ticket(row.ticket_id).contact_id).email == \
        "bob@other.test"


def test_a_forged_from_with_only_the_subject_as_evidence_is_held(services, ticket):
    msg = customer_mail("Re: [TKT-0001] Printer is on fire", "Never mind, close it.")
    row = deliver(services, msg, mail_from="attacker@evil.test")
    assert row.outcome == "comment" and "envelope sender" in row.reason
    assert services.store.public_comments(ticket.id) == []
    assert services.store.ticket(ticket.id).status == "open"


def test_cc_participant_may_reply(services):
    first = customer_mail("VPN down", "Nobody can connect.", Cc="Bob <bob@customer.test>, "
                          "support+tag@acme.test, Alex <alex@acme.test>",
                          to="support@acme.test, Carol <carol@customer.test>")
    row = deliver(services, first)
    with services.store.tx() as s:
        people = sorted(p.email for p in services.store.participants(s, row.ticket_id))
    assert people == ["bob@customer.test", "carol@customer.test"]  # not us, not our agents
    msg = reply_to(services, row.ticket_id, "Same for me.", sender="Bob <bob@customer.test>")
    reply = deliver(services, msg, mail_from="bob@customer.test")
    assert reply.outcome == "comment"
    [c] = services.store.public_comments(row.ticket_id)
    assert c.author_email == "bob@customer.test"


def test_reply_reopens_a_resolved_ticket_and_notifies_the_assignee(services, ticket):
    with services.store.tx() as s:
        t = s.get(Ticket, ticket.id)
        t.status = "resolved"
        s.add(t)
    deliver(services, reply_to(services, ticket.id, "It is back."))
    assert services.store.ticket(ticket.id).status == "open"
    kinds = [m.kind for m in services.store.outbox(ticket_id=ticket.id)]
    assert "agent/customer_replied" in kinds


def test_reply_to_a_closed_ticket_opens_a_new_linked_ticket(services, ticket):
    with services.store.tx() as s:
        t = s.get(Ticket, ticket.id)
        t.status = "closed"
        s.add(t)
    row = deliver(services, reply_to(services, ticket.id, "It is back.\n\n> old quote\n"))
    assert row.outcome == "new_ticket" and row.ticket_id != ticket.id
    new = services.store.ticket(row.ticket_id)
    assert new.linked_ticket_id == ticket.id and new.reference == "TKT-0002"
    assert new.description == "It is back."


def test_auto_reply_never_opens_a_ticket_nor_sends_mail(services, ticket):
    before = len(services.store.outbox())
    ooo = reply_to(services, ticket.id, "I am out of the office until Monday.")
    ooo.replace_header("Subject", "Out of office: Printer")
    ooo["Auto-Submitted"] = "auto-replied"
    row = deliver(services, ooo)
    assert row.outcome == "ignored" and row.classification == "auto_reply"
    assert row.ticket_id == ticket.id  # recorded against the ticket it refers to
    assert len(services.store.outbox()) == before
    assert services.store.comments(ticket.id) == []


def test_the_same_message_twice_is_stored_once(services):
    msg = customer_mail("Duplicate?", "Sent twice by a retrying MTA.")
    first = deliver(services, msg)
    second = deliver(services, msg, rcpt=["support@acme.test"])
    assert first.outcome == "new_ticket"
    assert second.outcome == "ignored" and "duplicate" in second.reason
    assert second.ticket_id == first.ticket_id
    assert len(services.store.tickets(services.store.workspace_by_slug("acme").id)) == 1


def test_mail_for_no_workspace_is_recorded_as_ignored(services):
    row = deliver(services, customer_mail("Hi", "x", to="nobody@else.test"),
                  rcpt=["nobody@else.test"])
    assert row.outcome == "ignored" and "nobody@else.test" in row.reason


def test_attachments_are_kept_with_the_ticket(services):
    msg = customer_mail("Screenshot", "See attached.")
    msg.add_attachment(b"\x89PNG\r\n\x1a\n" + b"0" * 100, maintype="image", subtype="png",
                       filename="screen.png")
    row = deliver(services, msg)
    [att] = services.store.attachments(row.ticket_id)
    assert (att.filename, att.content_type, att.size) == ("screen.png", "image/png", 108)
    assert services.blobs.get(att.sha256).startswith(b"\x89PNG")


def test_every_message_is_recorded_exactly_once(services, ticket):
    with services.store.tx() as s:
        rows = s.exec(select(InboundMessage)).all()
        comments = s.exec(select(Comment)).all()
    assert len(rows) == 1 and rows[0].outcome == "new_ticket" and comments == []


def test_two_copies_handled_at_once_make_one_ticket(services):
    from concurrent.futures import ThreadPoolExecutor

    spool = Spool(services.store, services.blobs)
    ids = []
    for i in range(8):
        raw = customer_mail(f"Copy {i}", "Delivered twice at the same moment.").as_bytes()
        ids += [spool.accept(raw, mail_from="jane@customer.test", rcpt_tos=["support@acme.test"])
                for _ in range(2)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(services.pipeline.process, ids))
    rows = [services.store.inbound(i) for i in ids]
    assert sorted(r.outcome for r in rows) == ["ignored"] * 8 + ["new_ticket"] * 8
    assert len(services.store.tickets(services.store.workspace_by_slug("acme").id)) == 8


def test_a_database_hiccup_leaves_the_message_pending_then_it_is_processed(services):
    from sqlalchemy.exc import OperationalError


    calls = []

    def hiccup(mail, ctx):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    flaky = Pipeline(services.settings, services.store, services.blobs, services.intake,
                     steps=(("hiccup", hiccup), *STEPS))
    inbound_id = Spool(services.store, services.blobs).accept(
        customer_mail("Hi", "x").as_bytes(), mail_from="jane@customer.test",
        rcpt_tos=["support@acme.test"])
    with pytest.raises(OperationalError):
        flaky.process(inbound_id)
    assert services.store.inbound(inbound_id).state == "received"
    assert services.store.pending_inbound() == [inbound_id]
    flaky.process(inbound_id)
    assert services.store.inbound(inbound_id).outcome == "new_ticket"


def test_our_own_mail_coming_back_is_a_loop_and_sends_nothing(services, ticket):
    conf = confirmation(services, ticket.id)
    before = len(services.store.outbox())
    row = deliver(services, conf.raw, mail_from="")  # e.g. a customer's forwarding rule
    assert (row.outcome, row.classification) == ("ignored", "loop")
    assert len(services.store.outbox()) == before
    assert len(services.store.tickets(ticket.workspace_id)) == 1


def test_another_helpdesks_loop_header_is_not_ours(services):
    msg = customer_mail("Question from a partner", "Written by a person at another helpdesk.",
                        X_Loop="workestra-0123456789abcdef")
    row = deliver(services, msg)
    assert (row.outcome, row.classification) == ("new_ticket", "normal")


def test_html_reaches_agents_only_sanitised_with_inline_images_linked(services, ticket):
    msg = reply_to(services, ticket.id, "See the photo.")
    msg.add_alternative('<p onclick="steal()">See the photo.<script>alert(1)</script>'
                        '<img src="cid:photo1"><img src="https://tracker.test/p.gif"></p>',
                        subtype="html")
    msg.get_payload()[1].add_related(b"\x89PNG\r\n\x1a\n" + b"\0" * 64, maintype="image",
                                     subtype="png", cid="<photo1>", filename="photo.png")
    row = deliver(services, msg)
    assert row.outcome == "comment"
    [comment] = services.store.public_comments(ticket.id)
    html = comment.body_html
    assert "See the photo." in html and 'src="cid:photo1"' in html
    assert "<script" not in html and "onclick" not in html and "tracker.test" not in html
    with services.store.read() as s:
        [att] = s.exec(select(Attachment).where(Attachment.comment_id == comment.id)).all()
    assert (att.inline, att.content_id, att.content_type) == (True, "photo1", "image/png")


def test_a_batch_commits_together_and_one_bad_message_spoils_nothing_else(services):
    def explode_on_poison(mail, ctx):
        if mail.parsed and mail.parsed.subject == "poison":
            raise RuntimeError("simulated bug for one message")

    batchy = Pipeline(services.settings, services.store, services.blobs, services.intake,
                      steps=(*STEPS[:-1], ("poison", explode_on_poison), STEPS[-1]))
    spool = Spool(services.store, services.blobs)
    ids = [spool.accept(customer_mail(subject, "x", sender=f"c{i}@customer.test").as_bytes(),
                        mail_from=f"c{i}@customer.test", rcpt_tos=["support@acme.test"])
           for i, subject in enumerate(["first", "poison", "third"])]
    done = batchy.process_batch(ids)
    assert [m.outcome for m in done] == ["new_ticket", "failed", "new_ticket"]
    rows = [services.store.inbound(i) for i in ids]
    assert [r.outcome for r in rows] == ["new_ticket", "failed", "new_ticket"]
    assert "simulated bug" in rows[1].reason and rows[1].ticket_id is None
    assert [t.subject for t in services.store.tickets(rows[0].workspace_id)] == ["first", "third"]
    kept = [services.store.inbound_raw(r.id, services.blobs) for r in rows]
    assert [hashlib.sha256(k).hexdigest() for k in kept] == [r.raw_sha256 for r in rows]


def test_a_message_that_fails_after_its_ticket_was_written_spoils_nothing_else(services):
    """The batch's transaction takes its ticket back, and the messages decided before it
    are decided again: the ticket numbers and row ids SQLite hands out again must not meet
    the rolled-back ones."""
    def explode_after_delivery(mail, ctx):
        if mail.parsed and mail.parsed.subject == "poison":
            held(ctx.s, Ticket, mail.ticket_id)  # a step that read its new ticket, then broke
            raise RuntimeError("simulated bug after the ticket was written")

    batchy = Pipeline(services.settings, services.store, services.blobs, services.intake,
                      steps=(*STEPS, ("poison", explode_after_delivery)))
    spool = Spool(services.store, services.blobs)
    ids = [spool.accept(customer_mail(subject, "x", sender=f"c{i}@customer.test").as_bytes(),
                        mail_from=f"c{i}@customer.test", rcpt_tos=["support@acme.test"])
           for i, subject in enumerate(["first", "poison", "third", "fourth"])]
    done = batchy.process_batch(ids)
    assert [m.outcome for m in done] == ["new_ticket", "failed", "new_ticket", "new_ticket"]
    rows = [services.store.inbound(i) for i in ids]
    assert [r.outcome for r in rows] == ["new_ticket", "failed", "new_ticket", "new_ticket"]
    tickets = services.store.tickets(rows[0].workspace_id)
    assert sorted(t.subject for t in tickets) == ["first", "fourth", "third"]
    assert {r.ticket_id for r in rows if r.ticket_id} == {t.id for t in tickets}


def test_a_reply_names_a_customer_first_known_by_a_bare_address(services):
    first = deliver(services, customer_mail("No name yet", "Hello.", sender="jane@customer.test"))
    ticket = services.store.ticket(first.ticket_id)
    assert services.store.contact(ticket.contact_id).name == ""
    deliver(services, reply_to(services, ticket.id, "More detail.",
                               sender="Jane  Doe <jane@customer.test>"))
    assert services.store.contact(ticket.contact_id).name == "Jane Doe"
    # a name once known stays: a later reply under another name does not rename her
    deliver(services, reply_to(services, ticket.id, "And more.",
                               sender="J. D. (phone) <jane@customer.test>"))
    assert services.store.contact(ticket.contact_id).name == "Jane Doe"


def test_a_reply_moves_the_ticket_up_the_agents_queue(services, ticket):
    """The console sorts by the last change: a reply by mail must move it, in the database."""
    before = services.store.ticket(ticket.id).updated_at
    deliver(services, reply_to(services, ticket.id, "Any news?"))
    after = services.store.ticket(ticket.id)
    assert after.updated_at > before and after.status == "open"
