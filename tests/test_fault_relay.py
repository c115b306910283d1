"""The relay refuses for a while, then accepts, while mail pours in (issue 7): every outbound
mail reaches the relay exactly once after it starts accepting, and the outbox keeps a record of
each refused attempt.

The gateway runs as `serve`, its relay an aiosmtpd server of our own that refuses every mail
until each queued mail has been refused at least once, then accepts. Two ways of refusing:
`451` to the end of DATA, and `421` to the end of DATA with the connection dropped right after,
the message having been sent whole. The outbox's backoff (5 s by default, doubling) is set to
BACKOFF here, so a run lasts a few backoff steps, not one 5 s step; a mail may then be refused
more than once before the relay opens, which the record of attempts must show too.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import smtplib
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
from aiosmtpd.controller import Controller
from sqlmodel import select

from storage.models import DeliveryAttempt, InboundMessage, OutboundMessage, Ticket
from tests.conftest import Running, customer_mail, free_port, start_gateway, stop_gateway

MAILS = 40
CONNECTIONS = 4
BACKOFF = "0.5"  # WORKESTRA_OUTBOX_BACKOFF: 8 attempts take over a minute, far beyond a run


@dataclass
class FlakyRelay:
    """Refuses every mail (`451`, or `421` and a dropped connection) until `open()`."""

    refusal: str
    refusing: bool = True
    refused: Counter[str] = field(default_factory=Counter)  # Message-ID -> times refused
    delivered: list[tuple[str, str, float]] = field(default_factory=list)  # id, subject, when
    lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self) -> float:
        with self.lock:
            self.refusing = False
            return time.monotonic()

    async def handle_DATA(self, server, session, envelope) -> str:
        msg = email.message_from_bytes(envelope.original_content or envelope.content,
                                       policy=email.policy.default)
        message_id = str(msg["Message-ID"]).strip().strip("<>")
        with self.lock:
            if not self.refusing:
                self.delivered.append((message_id, str(msg["Subject"]), time.monotonic()))
                return "250 2.0.0 Queued"
            self.refused[message_id] += 1
        if self.refusal == "451":
            return "451 4.3.0 Try again later"
        # Answer, then hang up without waiting for the client's QUIT.
        asyncio.get_running_loop().call_later(0.01, server.transport.close)
        return "421 4.3.2 Service shutting down, closing channel"


def send_all(running: Running) -> None:
    """MAILS customer mails from distinct senders, over CONNECTIONS sessions at once."""
    mails = [customer_mail(f"Load test {i:02d}", f"Message {i}.",
                           sender=f"Customer {i} <c{i:02d}@customer.test>") for i in range(MAILS)]
    errors: list[BaseException] = []

    def sender(part: list) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", running.smtp_port, timeout=60) as s:
                for m in part:
                    s.send_message(m)
        except BaseException as e:  # reported below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=sender, args=(mails[k::CONNECTIONS],))
               for k in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors


def snapshot(running: Running) -> tuple[list[InboundMessage], list[Ticket],
                                        list[OutboundMessage], list[DeliveryAttempt]]:
    svc = running.services()
    try:
        with svc.store.read() as s:
            return (list(s.exec(select(InboundMessage))), list(s.exec(select(Ticket))),
                    list(s.exec(select(OutboundMessage))),
                    list(s.exec(select(DeliveryAttempt).order_by(DeliveryAttempt.id))))
    finally:
        svc.close()


def wait_until(what: str, running: Running, check, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = snapshot(running)
        if check(*state):
            return state
        time.sleep(0.3)
    raise AssertionError(f"never {what}: " + running.logs()[-3000:])


# Each refusal on one database, not all four pairs: how a refusal is told apart (a 4xx answer,
# a dropped connection) is the SMTP client's business (gateway/outbound/transport.py) and the
# same on both; the databases differ in how the outbox claims and records a batch, which each
# pair exercises alike.
@pytest.mark.parametrize("database_url, refusal", [("sqlite", "451"), ("postgres", "421")],
                         indirect=["database_url"])
def test_relay_refusing_then_accepting_delivers_every_mail_exactly_once(tmp_path, database_url,
                                                                        refusal):
    relay = FlakyRelay(refusal)
    controller = Controller(relay, hostname="127.0.0.1", port=free_port())
    controller.start()
    running = start_gateway(tmp_path, database_url, controller.port,
                            {"WORKESTRA_OUTBOX_BACKOFF": BACKOFF})
    try:
        send_all(running)

        def all_refused(inbound, tickets, outbound, attempts) -> bool:
            with relay.lock:
                return (len(tickets) == MAILS and all(r.state == "done" for r in inbound)
                        and all(m.message_id in relay.refused for m in outbound))

        wait_until("refused every queued mail once", running, all_refused)
        opened = relay.open()
        inbound, tickets, outbound, attempts = wait_until(
            "delivered the outbox", running,
            lambda i, t, out, a: all(m.state == "sent" for m in out))
        time.sleep(1)  # a second copy would be on its way by now (the outbox polls each 1 s)
    finally:
        stop_gateway(running)
        controller.stop()

    with relay.lock:
        delivered = list(relay.delivered)
        refused = Counter(relay.refused)
    assert len(inbound) == MAILS and all(r.outcome == "new_ticket" for r in inbound)
    # By Message-ID: every queued mail arrived once, after the relay opened, and nothing else.
    arrived = Counter(mid for mid, _, _ in delivered)
    assert set(arrived) == {m.message_id for m in outbound}
    assert max(arrived.values()) == 1, [mid for mid, n in arrived.items() if n > 1]
    assert all(when >= opened for _, _, when in delivered)
    assert set(refused) == set(arrived)
    # By ticket reference: one confirmation per ticket.
    confirmations = [m for m in outbound if m.kind == "customer/ticket_received"]
    subjects = {m.message_id: subject for m_id, subject, _ in delivered for m in confirmations
                if m.message_id == m_id}
    refs = Counter(re.search(r"TKT-\d+", s).group(0) for s in subjects.values())  # type: ignore
    assert refs == Counter(t.reference for t in tickets)
    assert len(refs) == MAILS and max(refs.values()) == 1
    # The outbox's record: each refusal as a `retry` with the relay's answer, then one `sent`.
    per_mail: dict[int, list[DeliveryAttempt]] = {}
    for a in attempts:
        per_mail.setdefault(a.outbound_id, []).append(a)
    for m in outbound:
        tries = per_mail[m.id]  # type: ignore[index]
        assert [a.result for a in tries] == ["retry"] * (len(tries) - 1) + ["sent"], tries
        assert len(tries) - 1 == refused[m.message_id] and m.attempts == len(tries)
        assert all(refusal in a.detail for a in tries[:-1]), [a.detail for a in tries]
        assert m.sent_at is not None and m.last_error is None
