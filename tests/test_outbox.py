"""The outbox against a real SMTP relay on loopback: retries on 4xx and outages, stops on 5xx."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller

from gateway.config import Relay
from gateway.intake import Person, TicketRequest
from gateway.outbound.outbox import OutboxWorker, backoff
from gateway.outbound.transport import SentDirectory, SmtpRelay
from gateway.outbound.verp import read_return_path
from tests.conftest import free_port


class FlakyRelay:
    """Answers the first `refuse` deliveries with `code`, then accepts."""

    def __init__(self, refuse: int, code: str) -> None:
        self.refuse = refuse
        self.code = code
        self.accepted: list[bytes] = []
        self.senders: list[str] = []  # envelope senders of the accepted mail
        self.attempts = 0

    async def handle_DATA(self, server, session, envelope):
        self.attempts += 1
        if self.attempts <= self.refuse:
            return self.code
        self.accepted.append(envelope.original_content or envelope.content)
        self.senders.append(envelope.mail_from)
        return "250 OK"


def _queue_one(services) -> int:
    ws = services.store.workspace_by_slug("acme")
    with services.store.tx() as s:
        services.intake.open_ticket(s, TicketRequest(
            workspace_id=ws.id, customer=Person("Jane", "jane@customer.test"),
            subject="Printer", description="Broken"))
    return len(services.store.outbox())


async def _drain(worker: OutboxWorker, done: Callable[[], bool], *, linger: float = 0.3,
                 timeout: float = 20.0) -> None:
    """Outbox passes until `done()` holds, then `linger` seconds more (several passes, and
    more than the first 0.1 s backoff step), so that a mail going out twice or a retry that
    should not happen would show. After `timeout` seconds it gives up and the test's asserts
    say what is missing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        await worker.deliver_due()
        if done():
            break
        await asyncio.sleep(0.05)
    deadline = loop.time() + linger
    while loop.time() < deadline:
        await asyncio.sleep(0.05)
        await worker.deliver_due()


def _all_in(services, *states: str) -> Callable[[], bool]:
    """True once every row of the outbox is in one of `states`."""
    return lambda: all(r.state in states for r in services.store.outbox())


@contextmanager
def relay_on(port: int, relay: FlakyRelay) -> Iterator[FlakyRelay]:
    """A real aiosmtpd relay on loopback for the length of the block."""
    controller = Controller(relay, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield relay
    finally:
        controller.stop()


def _worker(services, port: int, **kw) -> OutboxWorker:
    return OutboxWorker(services.store, SmtpRelay(Relay("127.0.0.1", port), timeout=5),
                        secret=services.settings.secret_key, backoff_base=0.1, **kw)


def test_temporary_refusals_delay_but_deliver_each_mail_once(services):
    queued = _queue_one(services)  # the confirmation and the agent's notification
    relay = FlakyRelay(refuse=2, code="451 4.3.0 Try again later")
    port = free_port()
    with relay_on(port, relay):
        asyncio.run(_drain(_worker(services, port), _all_in(services, "sent")))
    rows = services.store.outbox()
    assert [r.state for r in rows] == ["sent"] * queued
    assert len(relay.accepted) == queued  # exactly once each
    assert sum(r.attempts for r in rows) == queued + 2
    # each went out under its own envelope sender (VERP), which names its row for a bounce
    by_message_id = {r.message_id: r.id for r in rows}
    named = {read_return_path(services.settings.secret_key, sender) for sender in relay.senders}
    sent = {by_message_id[email.message_from_bytes(raw)["Message-ID"].strip("<>")]
            for raw in relay.accepted}
    assert named == sent == set(by_message_id.values())
    assert all(x.startswith("support+b") and x.endswith("@acme.test") for x in relay.senders)
    ids = {email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"]
           for raw in relay.accepted}
    assert ids == {f"<{r.message_id}>" for r in rows}


def test_permanent_refusal_is_recorded_and_not_retried(services):
    queued = _queue_one(services)
    relay = FlakyRelay(refuse=100, code="550 5.1.1 No such user")
    port = free_port()
    with relay_on(port, relay):
        asyncio.run(_drain(_worker(services, port), _all_in(services, "failed", "sent")))
    rows = services.store.outbox()
    assert [r.state for r in rows] == ["failed"] * queued
    assert all(r.attempts == 1 and "550" in r.last_error for r in rows)
    assert relay.attempts == queued


def test_a_relay_that_is_down_delays_mail_without_losing_it(services):
    queued = _queue_one(services)
    port = free_port()  # nothing listens here yet
    worker = _worker(services, port)
    # Until each was tried twice: refused connections are retried, the mail kept queued.
    asyncio.run(_drain(worker, lambda: all(r.attempts >= 2 or r.state != "queued"
                                           for r in services.store.outbox()), linger=0))
    rows = services.store.outbox()
    assert all(r.state == "queued" and r.attempts >= 2 and r.last_error for r in rows)
    relay = FlakyRelay(refuse=0, code="")
    with relay_on(port, relay):
        asyncio.run(_drain(worker, _all_in(services, "sent", "failed")))
    assert [r.state for r in services.store.outbox()] == ["sent"] * queued
    assert len(relay.accepted) == queued


class SessionCountingRelay(FlakyRelay):
    """Accepts everything and counts the SMTP sessions the mail came over."""

    def __init__(self) -> None:
        super().__init__(refuse=0, code="")
        self.sessions: set[int] = set()

    async def handle_DATA(self, server, session, envelope):
        self.sessions.add(id(session))
        return await super().handle_DATA(server, session, envelope)


def _queue_many(services, count: int) -> None:
    ws = services.store.workspace_by_slug("acme")
    with services.store.tx() as s:
        for i in range(count):
            services.intake.open_ticket(s, TicketRequest(
                workspace_id=ws.id, customer=Person(f"C{i}", f"c{i}@customer.test"),
                subject=f"Printer {i}", description="Broken"))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_connections_to_the_relay_are_reused_and_a_dropped_one_is_replaced(services):
    _queue_many(services, 15)  # a confirmation and an agent's notice each
    port = free_port()
    relay = SessionCountingRelay()
    transport = SmtpRelay(Relay("127.0.0.1", port), timeout=5, check_after=0.0)
    worker = OutboxWorker(services.store, transport, secret=services.settings.secret_key,
                          backoff_base=0.1, connections=4)

    async def scenario() -> None:
        with relay_on(port, relay):
            await _drain(worker, _all_in(services, "sent", "failed"))
        # The relay restarts: every kept connection is dead. NOOP finds out, not a mail.
        _queue_many(services, 1)
        with relay_on(port, relay):
            await _drain(worker, _all_in(services, "sent", "failed"))
            await transport.close()

    asyncio.run(scenario())
    rows = services.store.outbox()
    assert len(rows) == 32 and all(r.state == "sent" and r.attempts == 1 for r in rows)
    assert len(relay.accepted) == 32  # each exactly once
    assert len(relay.sessions) <= 4 + 2  # four kept open, then new ones after the restart


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_without_a_relay_mail_is_written_to_the_sent_folder(services, tmp_path):
    queued = _queue_one(services)
    worker = OutboxWorker(services.store, SentDirectory(tmp_path / "sent"),
                          secret=services.settings.secret_key)
    asyncio.run(_drain(worker, _all_in(services, "sent", "failed")))
    files = sorted((tmp_path / "sent").glob("*.eml"))
    assert len(files) == queued
    subjects = {str(email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
                    ["Subject"]) for f in files}
    assert "[TKT-0001] Printer" in subjects


def test_backoff_doubles_and_is_capped():
    assert [backoff(n).total_seconds() for n in (1, 2, 3)] == [5, 10, 20]
    assert backoff(30) == timedelta(minutes=10)


def test_each_attempt_is_recorded_with_what_the_relay_said(services):
    _queue_one(services)
    relay = FlakyRelay(refuse=1, code="421 4.7.0 Busy, come back later")
    port = free_port()
    with relay_on(port, relay):
        asyncio.run(_drain(_worker(services, port), _all_in(services, "sent", "failed")))
    histories = [[(a.result, a.detail) for a in services.store.delivery_attempts(m.id)]
                 for m in services.store.outbox()]
    refused = [h for h in histories if len(h) == 2]  # the one the relay turned away first
    assert len(refused) == 1 and len(histories) - 1 == sum(len(h) == 1 for h in histories)
    (first, why), (second, answer) = refused[0]
    assert (first, second) == ("retry", "sent") and "421" in why and answer  # the 250 text
    assert all(h[0][0] == "sent" for h in histories if len(h) == 1)


# -- many workers, one queue ------------------------------------------------------------------

class CountingRelay(FlakyRelay):
    """Accepts everything, slowly enough that two workers overlap."""

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(0.005)
        return await super().handle_DATA(server, session, envelope)


def test_two_workers_on_one_queue_send_each_mail_exactly_once(services):
    from gateway.services import build_services

    ws = services.store.workspace_by_slug("acme")
    queued = _queue_one(services)
    ticket = services.store.tickets(ws.id)[0]
    with services.store.tx() as s:
        for i in range(150 - queued):
            services.mailer.queue(s, ws, kind="customer/tracking_link", to_name=f"C{i}",
                                  to_address=f"c{i}@customer.test", ticket=ticket, context={
                                      "customer_name": f"C{i}", "tracking_url": "http://x/"})
    other = build_services(services.settings, migrate=False)  # its own engine and connections
    relay = CountingRelay(refuse=0, code="")
    port = free_port()

    async def both() -> None:
        a, b = _worker(services, port), _worker(other, port)
        done = _all_in(services, "sent", "failed")  # then both keep polling the queue a while
        await asyncio.gather(_drain(a, done, linger=0.5), _drain(b, done, linger=0.5))

    try:
        with relay_on(port, relay):
            asyncio.run(both())
    finally:
        other.close()
    ids = [email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"]
           for raw in relay.accepted]
    assert len(ids) == len(set(ids)) == 150
    rows = services.store.outbox()
    assert all(r.state == "sent" and r.attempts == 1 for r in rows)


# -- a relay that wants TLS and a login -------------------------------------------------------

def _self_signed(tmp_path) -> tuple[str, str]:
    from datetime import UTC, datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "relay.pem", tmp_path / "relay.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("password, delivered", [("s3cret", True), ("wrong", False)])
def test_starttls_and_login_to_the_relay(services, tmp_path, password, delivered):
    import ssl

    from aiosmtpd.smtp import AuthResult

    from gateway.config import parse_relay

    cert, key = _self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    logins: list[tuple[str, bool]] = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (auth_data.login, auth_data.password) == (b"bot", b"s3cret")
        logins.append((auth_data.login.decode(), session.ssl is not None))
        # handled=False: aiosmtpd answers 535 itself (handled=True would leave the client
        # waiting for an answer until its timeout)
        return AuthResult(success=ok, handled=False)

    queued = _queue_one(services)
    relay = FlakyRelay(refuse=0, code="")
    port = free_port()
    controller = Controller(relay, hostname="127.0.0.1", port=port, tls_context=tls,
                            require_starttls=True, auth_required=True,
                            authenticator=authenticator)
    controller.start()
    try:
        url = f"smtp+starttls://bot:{password}@127.0.0.1:{port}?ca={cert}"
        worker = OutboxWorker(services.store, SmtpRelay(parse_relay(url), timeout=5),
                              secret=services.settings.secret_key, backoff_base=0.1)
        done = (_all_in(services, "sent", "failed") if delivered  # or refused logins, retried:
                else lambda: all(r.attempts >= 2 for r in services.store.outbox()))
        asyncio.run(_drain(worker, done))
    finally:
        controller.stop()
    assert logins and all(user == "bot" and over_tls for user, over_tls in logins)
    rows = services.store.outbox()
    if delivered:
        assert len(relay.accepted) == queued and all(r.state == "sent" for r in rows)
    else:  # a wrong password keeps mail queued for when the setting is fixed
        assert not relay.accepted and all(r.state == "queued" for r in rows)
        assert all(r.attempts >= 2 and "refused our login: 535" in r.last_error for r in rows)


def test_mails_handed_to_the_sent_folder_together_are_each_written_or_failed(tmp_path):
    """One writer thread takes a whole pass; a mail that cannot be written fails alone."""
    folder = SentDirectory(tmp_path / "sent")

    async def scenario():
        names = [f"{i:08d}-customer-ticket_received" for i in range(20)]
        names[7] = "no-such-folder/x"  # its file cannot be made: an OSError for it alone
        results = await asyncio.gather(
            *(folder.send(f"Subject: {n}\r\n\r\nhi\r\n".encode(), "a@b.test", ["c@d.test"], n)
              for n in names), return_exceptions=True)
        await folder.close()
        return results

    results = asyncio.run(scenario())
    assert isinstance(results[7], OSError)
    assert sum(isinstance(r, str) for r in results) == 19
    written = sorted(p.name for p in (tmp_path / "sent").glob("*.eml"))
    assert len(written) == 19 and "00000007-customer-ticket_received.eml" not in written
    assert not list((tmp_path / "sent").glob(".tmp-*"))  # nothing half-written left behind


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_under_a_stream_of_mail_each_pass_carries_many(services, tmp_path):
    """Mail queued one at a time while the outbox runs goes out in few passes, each mail once;
    the first, queued while it was idle, goes out without waiting for the next pass."""
    worker = OutboxWorker(services.store, SentDirectory(tmp_path / "sent"),
                          secret=services.settings.secret_key, gather=0.2)
    services.mailer.on_queued(worker.wake)
    passes = 0
    deliver_due = worker.deliver_due

    async def counted() -> int:
        nonlocal passes
        delivered = await deliver_due()
        passes += bool(delivered)
        return delivered

    worker.deliver_due = counted  # type: ignore[method-assign]

    async def scenario():
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        await asyncio.sleep(0.3)  # idle, so the first mail is sent at once
        await asyncio.to_thread(_queue_one, services)
        services.mailer.wake()
        for _ in range(100):
            if list((tmp_path / "sent").glob("*.eml")):
                break
            await asyncio.sleep(0.01)
        first = len(list((tmp_path / "sent").glob("*.eml")))
        for _ in range(15):  # a submission every 40 ms
            await asyncio.to_thread(_queue_one, services)
            services.mailer.wake()
            await asyncio.sleep(0.04)
        for _ in range(300):
            if all(r.state == "sent" for r in services.store.outbox()):
                break
            await asyncio.sleep(0.02)
        stop.set()
        await running
        return first

    first = asyncio.run(scenario())
    rows = services.store.outbox()
    assert first >= 1  # within 0.1 s of being queued, long before a 0.2 s pause was over
    assert len(rows) >= 16 and all(r.state == "sent" and r.attempts == 1 for r in rows)
    assert len(list((tmp_path / "sent").glob("*.eml"))) == len(rows)  # each once
    assert passes <= 6  # about 0.7 s of mail in passes 0.2 s apart, not a pass per mail
