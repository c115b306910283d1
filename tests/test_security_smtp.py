"""Hostile SMTP clients against the running gateway (issue 7): relaying, recipient enumeration,
recipient floods, size declarations and slow or silent connections."""

from __future__ import annotations

import contextlib
import itertools
import smtplib
import socket
import threading
import time

import pytest

from tests.conftest import customer_mail, start_gateway, stop_gateway

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

RELAY_ATTEMPTS = [
    "<victim@gmail.com>",
    "<@relay.test:victim@evil.test>",  # RFC 5321 source route
    "<@a.test,@relay.test:victim@evil.test>",
    "<victim%evil.test@acme.test>",  # the "percent hack"
    "<evil.test!victim@acme.test>",  # UUCP bang path
    '<"victim@evil.test"@acme.test>',
    "<support@acme.test@evil.test>",
]


def _session(port: int) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", port, timeout=30)
    s.ehlo("client.test")
    code, _ = s.mail("mallory@customer.test")
    assert code == 250
    return s


def _count_rows(svc) -> int:
    from sqlmodel import func, select

    from storage.models import InboundMessage

    with svc.store.read() as s:
        return s.exec(select(func.count()).select_from(InboundMessage)).one()


def test_relay_attempts_are_refused_at_rcpt_and_nothing_is_spooled(gateway):
    with contextlib.closing(_session(gateway.smtp_port)) as s:
        for rcpt in RELAY_ATTEMPTS:
            code, text = s.docmd("RCPT TO:", rcpt)
            assert 500 <= code < 600, (rcpt, code, text)
        code, _ = s.docmd("DATA")
        assert code == 503  # no valid recipient: no message can follow
        s.rset()
    assert _count_rows_of(gateway) == 0


def _count_rows_of(gateway) -> int:
    svc = gateway.services()
    try:
        return _count_rows(svc)
    finally:
        svc.close()


def test_unknown_recipients_get_one_answer_whatever_the_reason(gateway):
    """A prober learns only "not here": an unknown mailbox at our domain and an unknown
    domain answer the same code and text, so neither workspaces nor mailboxes leak."""
    probes = ["nobody@acme.test", "admin@acme.test", "postmaster-x@acme.test",
              "support@nonexistent-workspace.test", "support@globex.test", "a@b.test"]
    with contextlib.closing(_session(gateway.smtp_port)) as s:
        answers = {rcpt: s.docmd("RCPT TO:", f"<{rcpt}>") for rcpt in probes}
        known = s.docmd("RCPT TO:", "<support@acme.test>")
    assert known[0] == 250
    assert len(set(answers.values())) == 1, answers
    code, text = next(iter(answers.values()))
    assert code == 550 and b"acme" not in text.lower()


def test_many_recipients_of_one_workspace_make_one_ticket_and_one_confirmation(gateway, sink):
    rcpts = [f"support+r{i}@acme.test" for i in range(100)]  # RFC 5321 asks that 100 be taken
    msg = customer_mail("Sprayed at every alias", "One mail, a hundred aliases.",
                        sender="mallory@customer.test")
    with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=60) as s:
        assert s.sendmail("mallory@customer.test", rcpts, msg.as_bytes()) == {}
    sink.wait_for(lambda m: "mallory@customer.test" in str(m["To"]))
    time.sleep(1.0)  # any further (wrong) confirmations would have arrived by now
    assert len(sink.to("mallory@customer.test")) == 1
    svc = gateway.services()
    try:
        from sqlmodel import select

        from storage.models import Ticket
        with svc.store.read() as s:
            assert len(list(s.exec(select(Ticket)))) == 1
    finally:
        svc.close()


def test_recipients_past_the_limit_are_deferred_with_452(gateway):
    with contextlib.closing(_session(gateway.smtp_port)) as s:
        codes = [s.docmd("RCPT TO:", f"<support+r{i}@acme.test>")[0] for i in range(1000)]
    assert codes[:100] == [250] * 100
    assert set(codes[100:]) == {452}


def test_a_declared_size_over_the_limit_is_refused_at_mail_from(tmp_path, database_url, sink):
    """SIZE= (RFC 1870) lets the sender learn the limit before sending a byte of the body."""
    running = start_gateway(tmp_path, database_url, sink.port,
                            {"WORKESTRA_MAX_MESSAGE_SIZE": "50000"})
    try:
        with smtplib.SMTP("127.0.0.1", running.smtp_port, timeout=30) as s:
            s.ehlo()
            assert s.has_extn("size") and int(s.esmtp_features["size"]) == 50000
            code, _ = s.docmd("MAIL FROM:<jane@customer.test> SIZE=60000000")
            assert code == 552
            code, _ = s.docmd("MAIL FROM:<jane@customer.test> SIZE=1000")
            assert code == 250  # the session goes on for an honest size
        assert _count_rows_of(running) == 0
    finally:
        stop_gateway(running)


class _Loris(threading.Thread):
    """A client that connects and then sends nothing, or one byte every `every` seconds."""

    def __init__(self, port: int, payload: bytes, every: float, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.payload, self.every, self.stop = port, payload, every, stop
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.greeted = self.sock.recv(1024).startswith(b"220")  # the server has taken it on
        self.dribbling = threading.Event()  # set once its first byte is out

    def run(self) -> None:
        with contextlib.suppress(OSError):
            for byte in self.payload:
                if self.stop.wait(self.every):
                    break
                self.sock.sendall(bytes([byte]))
                self.dribbling.set()
            self.stop.wait()
        self.sock.close()


def test_silent_and_dribbling_clients_do_not_hold_up_a_normal_sender(gateway, sink):
    stop = threading.Event()
    lorises = [_Loris(gateway.smtp_port, b"", 1.0, stop) for _ in range(40)]
    lorises += [_Loris(gateway.smtp_port, b"EHLO slow.test\r\nMAIL FROM:<a@b.test>\r\n", 0.5,
                       stop) for _ in range(10)]
    for t in lorises:
        t.start()
    try:
        assert all(t.greeted for t in lorises)  # all connected, each holding a session
        for t in lorises:
            if t.payload:  # and the dribblers are each in the middle of a command
                assert t.dribbling.wait(10)
        started = time.monotonic()
        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=15) as s:
            code, _ = s.ehlo("fast.test")
            assert code == 250
            s.sendmail("jane@customer.test", ["support@acme.test"],
                       customer_mail("Meanwhile", "Normal client").as_bytes())
        assert time.monotonic() - started < 5.0
        sink.wait_for(lambda m: "Meanwhile" in str(m["Subject"]))
    finally:
        stop.set()
        for t in lorises:
            t.join(5)


def _closed_within(sock: socket.socket, seconds: float) -> bytes | None:
    """What the server said before closing, or None if it was still open after `seconds`."""
    sock.settimeout(seconds)
    said = b""
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(4096)
            if not chunk:
                return said
            said += chunk
    except ConnectionResetError:  # closed with our last bytes unread: the kernel sends a reset
        return said
    except OSError:  # still open when the time ran out
        return None
    return None


def _dribble_until_closed(sock: socket.socket, every: float, seconds: float) -> bytes | None:
    """One byte of a command that never ends (no line end ever comes) every `every` seconds;
    what the server said before it closed, or None if it was still open after `seconds`."""
    said = b""
    deadline = time.monotonic() + seconds
    for byte in itertools.cycle(b"EHLO slow.client.test "):
        if time.monotonic() >= deadline:
            return None
        try:
            sock.sendall(bytes([byte]))
        except OSError:  # closed (and reset) since the last byte
            return said
        heard = _closed_within(sock, every)
        if heard is not None:
            return said + heard
    return None


def test_idle_and_dribbling_connections_are_closed_by_the_timeout(tmp_path, database_url, sink):
    running = start_gateway(tmp_path, database_url, sink.port, {"WORKESTRA_SMTP_TIMEOUT": "1"})
    try:
        idle = socket.create_connection(("127.0.0.1", running.smtp_port), timeout=10)
        assert idle.recv(1024).startswith(b"220")
        slow = socket.create_connection(("127.0.0.1", running.smtp_port), timeout=10)
        assert slow.recv(1024).startswith(b"220")
        # a command that never ends resets nothing: with a byte every 0.25 s, far inside the
        # 1 s timeout, the server still hangs up while the bytes keep coming
        said_slow = _dribble_until_closed(slow, 0.25, 10)
        said_idle = _closed_within(idle, 5)  # past 1 s of silence by now
        assert said_idle is not None  # hung up on (aiosmtpd closes without a 421)
        assert said_slow is not None and b"250" not in said_slow
    finally:
        stop_gateway(running)
