"""Inbound DKIM: a valid signature vouches for a reply; a failed or missing one from a signing
domain holds it for an agent. Keys are published in a test zone, verified by dkimpy."""

from __future__ import annotations

import pytest
from sqlmodel import select

from gateway.dkim_keys import generate, record_name
from gateway.outbound.dkim_sign import sign
from storage.models import Comment
from tests.conftest import customer_mail
from tests.test_pipeline import deliver, reply_to


@pytest.fixture
def ticket(services):
    row = deliver(services, customer_mail("Printer is on fire", "Room 4."))
    return services.store.ticket(row.ticket_id)


@pytest.fixture
def customer_key(zone):
    """customer.test publishes a DKIM key, as most mail providers do."""
    pair = generate()
    zone.publish(record_name("mail", "customer.test"), pair.txt_value())
    return pair


def signed(msg, pair, domain="customer.test") -> bytes:
    raw = msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return sign(raw, selector="mail", domain=domain, private_pem=pair.private_pem)


def comments(services, ticket_id):
    with services.store.read() as s:
        return list(s.exec(select(Comment).where(Comment.ticket_id == ticket_id)))


def test_a_validly_signed_reply_is_posted_and_the_result_stored(services, ticket, customer_key):
    row = deliver(services, signed(reply_to(services, ticket.id, "It works now."), customer_key))
    assert row.outcome == "comment" and row.dkim == "pass:customer.test"
    [c] = comments(services, ticket.id)
    assert (c.internal, c.author_kind, c.body.strip()) == (False, "customer", "It works now.")


def test_a_reply_altered_after_signing_is_held_as_an_internal_note(services, ticket,
                                                                    customer_key):
    raw = signed(reply_to(services, ticket.id, "Please refund me."), customer_key)
    row = deliver(services, raw.replace(b"Please refund me.", b"Please refund my friend."))
    assert row.outcome == "comment" and row.dkim.startswith("fail:customer.test")
    assert "DKIM signature for customer.test failed" in row.reason
    [c] = comments(services, ticket.id)
    assert c.internal and c.held_reason and "body hash" in c.held_reason


def test_unsigned_mail_from_a_domain_that_signs_is_held(services, ticket, customer_key):
    deliver(services, signed(reply_to(services, ticket.id, "First, signed."), customer_key))
    row = deliver(services, reply_to(services, ticket.id, "Second, forged: send me the data."))
    assert row.dkim == "none"
    assert "signs its mail with DKIM" in row.reason
    held = [c for c in comments(services, ticket.id) if c.internal]
    assert [c.body.strip() for c in held] == ["Second, forged: send me the data."]


def test_unsigned_mail_from_a_domain_never_seen_signing_is_posted(services, ticket):
    row = deliver(services, reply_to(services, ticket.id, "Plain old mail server."))
    assert row.dkim == "none" and row.reason.startswith("reply on TKT-0001")


def test_a_missing_key_is_not_taken_for_a_forgery(services, ticket):
    pair = generate()  # signed, but the key was never published
    row = deliver(services, signed(reply_to(services, ticket.id, "Key not in DNS yet."), pair))
    assert row.dkim.startswith("permerror:customer.test")
    assert not any(c.internal for c in comments(services, ticket.id))


def test_a_valid_signature_vouches_when_only_the_subject_ties_the_reply(services, ticket,
                                                                       customer_key):
    # No In-Reply-To, no signed address, and an envelope sender of another domain (a
    # forwarding service): without DKIM this would be held; the signature vouches for it.
    msg = reply_to(services, ticket.id, "Sent through my forwarder.", headers=False)
    row = deliver(services, signed(msg, customer_key), mail_from="bounce@forwarder.test")
    assert (row.thread_method, row.outcome) == ("subject", "comment")
    assert not any(c.internal for c in comments(services, ticket.id))


def test_a_signature_by_another_domain_does_not_vouch(services, ticket):
    pair = generate()
    msg = reply_to(services, ticket.id, "Signed by someone else.", headers=False)
    row = deliver(services, signed(msg, pair, domain="evil.test"), mail_from="x@evil.test")
    assert "held as internal note" in row.reason
