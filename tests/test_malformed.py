"""Malformed mail over real SMTP: each gets a recorded outcome, its raw bytes are kept, and the
server goes on answering."""

from __future__ import annotations

import smtplib
import time

import pytest

from tests.conftest import customer_mail

NO_FROM = b"To: support@acme.test\r\nSubject: Who am I\r\n\r\nI forgot my From header.\r\n"
BROKEN_MIME = (b"From: Jane <jane@customer.test>\r\nTo: support@acme.test\r\n"
               b"Subject: Broken boundary\r\nMIME-Version: 1.0\r\n"
               b'Content-Type: multipart/mixed; boundary="abc"\r\n\r\n'
               b"--abc\r\nContent-Type: text/plain\r\n\r\nThe boundary never closes.\r\n"
               b"--ab\r\nContent-Type: application/octet-stream\r\n\r\n\x01\x02\r\n")
BAD_CHARSET = (b"From: =?x-unknown?q?J=E9r=F4me?= <jerome@customer.test>\r\n"
               b"To: support@acme.test\r\nSubject: =?utf-8?b?broken base64!?=\r\n"
               b"Content-Type: text/plain; charset=x-no-such-charset\r\n\r\n"
               b"Caf\xe9 cr\xe8me, na\xefve \xff\xfe.\r\n")
NUL_BYTES = (b"From: jane@customer.test\r\nTo: support@acme.test\r\nSubject: Nul\x00ls\r\n\r\n"
             b"Body with \x00 NUL \x00 bytes.\r\n")
GARBAGE = b"\xff\xfe\x00\x01 not an email at all \x00\x00\r\n\r\n\x80\x81"
GARBAGE_HEADER = (b"From: Jane <jane@customer.test>\r\n\x8f\xff not a header \x01\r\n"
                  b"To: support@acme.test\r\nSubject: Garbled header block\r\n\r\n"
                  b"Still readable.\r\n")

CASES = {
    "no-from": (NO_FROM, "jane@customer.test"),
    "no-from-no-envelope": (NO_FROM, ""),
    "broken-mime": (BROKEN_MIME, "jane@customer.test"),
    "bad-charset": (BAD_CHARSET, "jerome@customer.test"),
    "nul-bytes": (NUL_BYTES, "jane@customer.test"),
    "garbage": (GARBAGE, "jane@customer.test"),
    "garbage-header": (GARBAGE_HEADER, "jane@customer.test"),
}


def _wait_done(svc, count: int, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = svc.store.inbound_messages()
        if len(rows) >= count and all(r.state == "done" for r in rows):
            return rows
        time.sleep(0.1)
    raise AssertionError(f"not all messages got an outcome: {svc.store.inbound_messages()}")


def test_malformed_mail_is_recorded_kept_and_never_stops_the_server(gateway):
    raws = []
    for raw, envelope in CASES.values():
        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=30) as s:
            s.sendmail(envelope, ["support@acme.test"], raw)
        raws.append(raw)
    gateway.send(customer_mail("Still alive?", "Yes."), "jane@customer.test",
                 ["support@acme.test"])
    svc = gateway.services()
    try:
        rows = _wait_done(svc, len(CASES) + 1)
        for row in rows:
            assert row.outcome in ("new_ticket", "comment", "ignored", "failed")
            assert row.reason
        for raw, row in zip(raws, rows, strict=False):
            sent = raw if raw.endswith(b"\r\n") else raw + b"\r\n"  # smtplib ends DATA so
            assert svc.store.inbound_raw(row.id, svc.blobs) == sent  # byte for byte, for a replay
        outcome = {name: row for name, row in zip(CASES, rows, strict=False)}
        assert outcome["no-from"].outcome == "new_ticket"  # answered at the envelope sender
        assert outcome["no-from-no-envelope"].outcome in ("failed", "ignored")
        assert outcome["broken-mime"].outcome == "new_ticket"
        assert outcome["bad-charset"].outcome == "new_ticket"
        assert outcome["garbage-header"].outcome == "new_ticket"
        garbled = svc.store.ticket(outcome["garbage-header"].ticket_id)
        assert garbled.subject == "Garbled header block"
        assert "Still readable." in garbled.description
        assert rows[-1].outcome == "new_ticket"
        ticket = svc.store.ticket(outcome["bad-charset"].ticket_id)
        assert "Caf" in ticket.description and "cr" in ticket.description
        assert gateway.proc.poll() is None
    finally:
        svc.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_failing_step_records_failed_and_keeps_the_bytes(services):
    from gateway.inbound.pipeline import Pipeline
    from gateway.inbound.spool import Spool

    def explode(mail, ctx):
        raise RuntimeError("simulated bug in a step")

    broken = Pipeline(services.settings, services.store, services.blobs, services.intake,
                      steps=(("boom", explode),))
    raw = customer_mail("Hi", "x").as_bytes()
    inbound_id = Spool(services.store, services.blobs).accept(
        raw, mail_from="jane@customer.test", rcpt_tos=["support@acme.test"])
    broken.process(inbound_id)
    row = services.store.inbound(inbound_id)
    assert (row.state, row.outcome) == ("done", "failed")
    assert "simulated bug" in row.reason
    assert services.store.inbound_raw(row.id, services.blobs) == raw
