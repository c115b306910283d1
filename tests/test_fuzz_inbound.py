"""Hostile input to the inbound side: generated and mutated mail never crashes the parser, and
every message through the pipeline ends in exactly one recorded outcome (hypothesis)."""

from __future__ import annotations

from email.message import EmailMessage

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.inbound.parse import parse
from gateway.inbound.spool import Spool

HEADER_NAMES = ["From", "To", "Cc", "Subject", "Message-ID", "In-Reply-To", "References",
                "Content-Type", "Content-Transfer-Encoding", "Content-Disposition",
                "Auto-Submitted", "Precedence", "List-Id", "Return-Path", "X-Loop",
                "DKIM-Signature", "Delivered-To", "Reply-To", "MIME-Version"]


def seed_mail() -> bytes:
    m = EmailMessage()
    m["From"] = "Jäne Ünicode <jane@customer.test>"
    m["To"] = "support@acme.test"
    m["Subject"] = "=?utf-8?q?Dr=C3=BCcker?= [TKT-0001] brennt"
    m["Message-ID"] = "<seed@customer.test>"
    m.set_content("Hello,\n\nOn Tue, Acme wrote:\n> quoted\n")
    m.add_alternative("<p>Hello <b>there</b><img src=cid:x></p>", subtype="html")
    m.add_attachment(b"%PDF-1.4 tiny", maintype="application", subtype="pdf",
                     filename="in voice.pdf")
    return m.as_bytes()


SEED = seed_mail()

header_line = st.builds(
    lambda name, value: f"{name}: {value}\r\n".encode("utf-8", "surrogatepass"),
    st.sampled_from(HEADER_NAMES),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80))


@st.composite
def mutated(draw) -> bytes:
    """The seed mail with bytes flipped, cut, duplicated or headers spliced in."""
    raw = bytearray(SEED)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "dup", "insert", "header"]))
        at = draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del raw[at:at + draw(st.integers(1, 200))]
        elif op == "dup":
            raw[at:at] = raw[at:at + draw(st.integers(1, 200))]
        elif op == "insert":
            raw[at:at] = draw(st.binary(max_size=40))
        else:
            raw[0:0] = draw(header_line)
    return bytes(raw)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=2000), mutated(),
                 st.lists(header_line, max_size=12).map(lambda h: b"".join(h) + b"\r\nbody")))
def test_the_parser_never_raises_and_always_says_something(raw):
    mail = parse(raw)
    assert isinstance(mail.subject, str) and isinstance(mail.text, str)
    assert all(a.filename for a in mail.attachments)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raws=st.lists(st.one_of(mutated(), st.binary(max_size=600)), min_size=1, max_size=5))
def test_every_hostile_message_ends_in_one_outcome(services, raws):
    spool = Spool(services.store, services.blobs)
    ids = [spool.accept(raw, mail_from="x@customer.test", rcpt_tos=["support@acme.test"])
           for raw in raws]
    services.pipeline.process_batch(ids)
    for inbound_id, raw in zip(ids, raws, strict=True):
        row = services.store.inbound(inbound_id)
        assert row.state == "done" and row.outcome in ("new_ticket", "comment", "ignored",
                                                       "failed")
        assert row.reason  # and the bytes are kept for a replay:
        assert services.store.inbound_raw(row.id, services.blobs) == raw
