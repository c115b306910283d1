"""Two real auto-responders on loopback against the running gateway: the exchange stops.

One responder follows RFC 3834 (Auto-Submitted, "Out of Office:" subject, In-Reply-To); the other
ignores every convention: plain headers, a fresh subject, sent to the From address, so each of
its answers looks like a new customer request. The first must get exactly one confirmation, the
second no more than the hourly cap, and then the mail must stop flowing both ways.
"""

from __future__ import annotations

import email
import email.policy
import smtplib
import threading
import time
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import Running, customer_mail, free_port, start_gateway, stop_gateway


class Responders:
    """The outside world: a relay that answers mail to the two responder addresses."""

    def __init__(self) -> None:
        self.port = free_port()
        self.gateway_port = 0
        self.received: dict[str, int] = {"polite@away.test": 0, "dumb@away.test": 0}
        self.answered = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        for rcpt in envelope.rcpt_tos:
            if rcpt in self.received:
                with self.lock:
                    self.received[rcpt] += 1
                threading.Thread(target=self.answer, args=(rcpt, msg), daemon=True).start()
        return "250 OK"

    def answer(self, rcpt: str, original: EmailMessage) -> None:
        reply = EmailMessage()
        reply["From"] = rcpt
        reply["To"] = str(original["From"])
        reply["Message-ID"] = email.utils.make_msgid(domain="away.test")
        if rcpt.startswith("polite"):
            reply["Subject"] = f"Out of Office: {original['Subject']}"
            reply["Auto-Submitted"] = "auto-replied"
            reply["In-Reply-To"] = str(original["Message-ID"])
        else:
            reply["Subject"] = "Thanks for your mail"
        reply.set_content("I am away until Monday. Your message matters to me.")
        with smtplib.SMTP("127.0.0.1", self.gateway_port, timeout=30) as s:
            s.sendmail(rcpt, ["support@acme.test"], reply.as_bytes())
        with self.lock:
            self.answered += 1


@pytest.fixture
def world():
    w = Responders()
    controller = Controller(w, hostname="127.0.0.1", port=w.port)
    controller.start()
    yield w
    controller.stop()


def settle(world: Responders, gateway: Running, quiet: float = 1.0, limit: float = 90.0
           ) -> None:
    """Wait until nothing is in flight anywhere, and then no mail moves for `quiet` seconds;
    fail if it never settles.

    In flight: a responder's answer not yet accepted by the gateway, a message the gateway
    has not decided, a mail still queued in its outbox. With none of these, nothing is left
    that could send another mail; `quiet` then checks that nothing does."""
    deadline = time.monotonic() + limit
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        svc = gateway.services()
        try:
            rows, outbox = svc.store.inbound_messages(), svc.store.outbox()
        finally:
            svc.close()
        with world.lock:
            now = (dict(world.received), world.answered, len(rows), len(outbox))
            idle = (world.answered == sum(world.received.values())
                    and len(rows) == 2 + world.answered
                    and all(r.state == "done" for r in rows)
                    and all(m.state != "queued" for m in outbox))
        if now != last or not idle:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.1)
    raise AssertionError(f"the mail never stopped flowing: {last}")


def test_two_auto_responders_cannot_keep_the_gateway_talking(tmp_path, database_url, world):
    gateway = start_gateway(tmp_path, database_url, world.port)
    world.gateway_port = gateway.smtp_port
    try:
        for sender in ("polite@away.test", "dumb@away.test"):
            gateway.send(customer_mail("Where is my order?", "Order 1234 is late.",
                                       sender=sender), sender, ["support@acme.test"])
        settle(world, gateway)
        svc = gateway.services()
        try:
            rows = svc.store.inbound_messages()
            outbox = svc.store.outbox()
        finally:
            svc.close()
    finally:
        stop_gateway(gateway)

    cap = 5
    assert world.received["polite@away.test"] == 1  # its out-of-office reply caused nothing
    assert world.received["dumb@away.test"] == cap  # then the brake held
    assert sum(1 for m in outbox if m.rcpt_to == "dumb@away.test") == cap
    polite = [r for r in rows if r.mail_from == "polite@away.test"]
    assert [(r.outcome, r.classification) for r in polite] == [
        ("new_ticket", "normal"), ("ignored", "auto_reply")]
    assert polite[1].ticket_id == polite[0].ticket_id  # recorded on the ticket it refers to
    assert all(r.state == "done" for r in rows)
    assert world.answered == 1 + cap and len(rows) == 2 + 1 + cap
