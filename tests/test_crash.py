"""kill -9 in the middle of a stream of SMTP deliveries: every `250` still ends as one outcome."""

from __future__ import annotations

import hashlib
import smtplib
import threading
import time
from collections import Counter

from sqlmodel import select

from storage.models import InboundMessage, Ticket
from tests.conftest import customer_mail, start_gateway, stop_gateway

TOTAL = 300
CONNECTIONS = 8
KILL_AFTER = TOTAL // 2


class Stream:
    """Eight senders sharing one list of mails; each keeps its connection until it breaks."""

    def __init__(self, port: int, mails: list) -> None:
        self.port = port
        self.mails = mails
        self.lock = threading.Lock()
        self.next = 0
        self.answered: list[str] = []  # Message-IDs the gateway answered 250
        self.half = threading.Event()

    def _take(self):
        with self.lock:
            if self.next >= len(self.mails):
                return None
            self.next += 1
            return self.mails[self.next - 1]

    def sender(self) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as smtp:
                while (msg := self._take()) is not None:
                    smtp.sendmail("jane@customer.test", ["support@acme.test"], msg.as_bytes())
                    with self.lock:  # sendmail returned: the server said 250 to DATA
                        self.answered.append(msg["Message-ID"].strip("<>"))
                        if len(self.answered) >= KILL_AFTER:
                            self.half.set()
        except (OSError, smtplib.SMTPException):
            pass  # the server went away mid-conversation: this mail was never acknowledged


def test_sigkill_mid_stream_loses_and_duplicates_nothing_answered_250(tmp_path, database_url):
    mails = [customer_mail(f"Crash test {i:03d}", f"Message {i} of the stream.")
             for i in range(TOTAL)]
    running = start_gateway(tmp_path, database_url, None)
    stream = Stream(running.smtp_port, mails)
    senders = [threading.Thread(target=stream.sender) for _ in range(CONNECTIONS)]
    for t in senders:
        t.start()
    try:
        assert stream.half.wait(120), running.logs()[-3000:]
        running.proc.kill()  # SIGKILL: no shutdown code runs
        running.proc.wait(30)
    finally:
        for t in senders:
            t.join(60)
        stop_gateway(running)
    answered = set(stream.answered)
    assert KILL_AFTER <= len(answered) < TOTAL, "the kill did not land mid-stream"

    restarted = start_gateway(tmp_path, database_url, None)
    check = restarted.services()
    try:
        deadline = time.monotonic() + 120
        while check.store.pending_inbound() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert check.store.pending_inbound() == [], restarted.logs()[-3000:]
        rows = check.store.inbound_messages()
        intact = [hashlib.sha256(check.store.inbound_raw(r.id, check.blobs)).hexdigest()
                  == r.raw_sha256 for r in rows]  # each one's bytes kept, for a replay
        with check.store.read() as s:
            tickets = list(s.exec(select(Ticket)))
    finally:
        check.close()
        stop_gateway(restarted)

    per_id = Counter(r.message_id for r in rows)
    assert all(per_id[mid] == 1 for mid in answered), \
        [mid for mid in answered if per_id[mid] != 1]
    by_id: dict[str | None, InboundMessage] = {r.message_id: r for r in rows}
    for mid in answered:
        row = by_id[mid]
        assert (row.state, row.outcome) == ("done", "new_ticket"), row
    # Anything recorded at all (answered or cut off before the 250) is finished, once.
    assert all(r.state == "done" and r.outcome == "new_ticket" for r in rows)
    assert max(per_id.values()) == 1
    assert all(intact)
    subjects = Counter(t.subject for t in tickets)
    assert max(subjects.values()) == 1
    assert len(tickets) == len(rows)
    answered_subjects = {str(m["Subject"]) for m in mails
                         if m["Message-ID"].strip("<>") in answered}
    assert answered_subjects <= set(subjects)
