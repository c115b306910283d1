"""The SMTP boundary: only our addresses, a size limit, and 250 only once the mail is durable."""

from __future__ import annotations

import asyncio
import random
import smtplib

import pytest
from aiosmtpd.smtp import SMTP

from gateway.inbound.receive import _PLAIN_PATH, _SMTP, ReceiveHandler
from tests.conftest import customer_mail, start_gateway, stop_gateway


def test_unknown_recipients_are_refused_at_rcpt(gateway):
    msg = customer_mail("Hi", "x", to="someone@elsewhere.test")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as err:
        gateway.send(msg, "jane@customer.test", ["someone@elsewhere.test"])
    code, text = err.value.recipients["someone@elsewhere.test"]
    assert code == 550
    with pytest.raises(smtplib.SMTPRecipientsRefused):  # no relaying for our own domain either
        gateway.send(msg, "jane@customer.test", ["nobody@acme.test"])


def test_known_address_with_a_plus_tag_is_accepted(gateway, sink):
    with smtplib.SMTP("127.0.0.1", gateway.smtp_port) as s:
        refused = s.sendmail("jane@customer.test", ["support+anything@acme.test", "x@nowhere.test"],
                             customer_mail("Hi", "x").as_bytes())
    assert list(refused) == ["x@nowhere.test"]
    sink.wait_for(lambda m: "jane@customer.test" in str(m["To"]))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_oversized_mail_is_refused_with_552(tmp_path, database_url, sink):
    running = start_gateway(tmp_path, database_url, sink.port,
                            {"WORKESTRA_MAX_MESSAGE_SIZE": "50000"})
    try:
        big = customer_mail("Big", "x" * 80_000)
        with pytest.raises((smtplib.SMTPSenderRefused, smtplib.SMTPDataError)) as err:
            running.send(big, "jane@customer.test", ["support@acme.test"])
        assert err.value.smtp_code == 552
        running.send(customer_mail("Small", "ok"), "jane@customer.test", ["support@acme.test"])
        sink.wait_for(lambda m: "Small" in str(m["Subject"]))
    finally:
        stop_gateway(running)


def test_one_message_for_two_workspaces_is_split_by_the_sender(gateway, sink):
    svc = gateway.services()
    from storage.models import Workspace

    with svc.store.tx() as s:
        ws = Workspace(slug="globex", name="Globex")
        s.add(ws)
        s.flush()
        svc.store.add_support_address(s, ws.id, "help@globex.test")
    svc.close()
    msg = customer_mail("Both of you", "Hello", to="support@acme.test, help@globex.test")
    with smtplib.SMTP("127.0.0.1", gateway.smtp_port) as s:
        refused = s.sendmail("jane@customer.test", ["support@acme.test", "help@globex.test"],
                             msg.as_bytes())
        assert refused == {"help@globex.test": (452, b"4.5.3 Too many recipients for one "
                                                     b"message, please send again")}
        s.sendmail("jane@customer.test", ["help@globex.test"], msg.as_bytes())
    sink.wait_for(lambda m: "Acme" in str(m["From"]) and "jane" in str(m["To"]))
    sink.wait_for(lambda m: "Globex" in str(m["From"]) and "jane" in str(m["To"]))


def test_smtp_offers_starttls_with_a_configured_certificate(tmp_path, sink):
    import ssl

    from tests.test_outbox import _self_signed

    cert, key = _self_signed(tmp_path)
    running = start_gateway(tmp_path, f"sqlite:///{tmp_path / 'data' / 'workestra.db'}",
                            sink.port, {"WORKESTRA_SMTP_TLS_CERT": cert,
                                        "WORKESTRA_SMTP_TLS_KEY": key})
    try:
        with smtplib.SMTP("127.0.0.1", running.smtp_port, timeout=30) as s:
            s.ehlo()
            assert s.has_extn("starttls")
            s.starttls(context=ssl.create_default_context(cafile=cert))
            s.ehlo()
            s.sendmail("jane@customer.test", ["support@acme.test"],
                       customer_mail("Over TLS", "Encrypted in transit.").as_bytes())
        sink.wait_for(lambda m: "Over TLS" in str(m["Subject"]))
        with smtplib.SMTP("127.0.0.1", running.smtp_port, timeout=30) as s:  # not required
            s.sendmail("bob@other.test", ["support@acme.test"],
                       customer_mail("Plain", "Old server.", sender="bob@other.test").as_bytes())
        sink.wait_for(lambda m: "Plain" in str(m["Subject"]))
    finally:
        stop_gateway(running)
    assert "STARTTLS offered" in running.logs()


def test_plain_addresses_are_read_as_aiosmtpd_reads_every_address():
    """The quick reading of `<local@domain>` in MAIL and RCPT gives aiosmtpd's own result for
    every path, plain or not: address, parameters after it, refusal of a bad one."""
    handler = object()
    loop = asyncio.new_event_loop()
    try:
        ours = _SMTP(handler, loop=loop, hostname="mx.test")
        theirs = SMTP(handler, loop=loop, hostname="mx.test")
    finally:
        loop.close()
    rng = random.Random(7)
    local = ["a", "b.c", "x-y", "+tag", "1", "A_B", "o'n", "#!", "~", "..", ".", "é", '"q u"',
             "(c)", " ", "\\", "x" * 70]
    domain = ["b.c", "x-y.z", "EXAMPLE.com", "a1", "-a", "a-", "b..c", "[1.2.3.4]", "é.fr", ""]
    after = ["", " ", "  SIZE=100", "\tBODY=8BITMIME", "(comment)", " (c) SIZE=1", "x", ">"]
    paths = ["", "<>", "a@b.c", "<a@b.c", "<@route:a@b.c>"] + [
        rng.choice(["", " "]) + "<" + "".join(rng.choices(local, k=rng.randint(1, 3))) + "@"
        + "".join(rng.choices(domain, k=rng.randint(1, 2))) + ">" + rng.choice(after)
        for _ in range(5000)]
    plain = [p for p in paths if _PLAIN_PATH.match(p)]
    assert len(plain) > 400  # the quick path is really taken, for many shapes
    assert [ours._getaddr(p) for p in paths] == [theirs._getaddr(p) for p in paths]
    assert ours._getaddr("<jane@customer.test> SIZE=5000") == ("jane@customer.test", "SIZE=5000")


def test_a_session_finds_the_commands_and_hooks_aiosmtpd_finds_by_walking_dir():
    """Our session and handler list only what aiosmtpd looks up by name (it walks dir() on
    every connection); every table it builds from those names must come out the same as
    from the full dir(), or a command or hook would be missing."""

    class FullDir(ReceiveHandler):
        def __dir__(self) -> list[str]:
            return object.__dir__(self)

    loop = asyncio.new_event_loop()
    try:
        ours = _SMTP(ReceiveHandler(None, None, print), loop=loop, hostname="mx.test")
        theirs = SMTP(FullDir(None, None, print), loop=loop, hostname="mx.test")
    finally:
        loop.close()
    tables = {k for k, v in vars(theirs).items() if isinstance(v, dict) and v}
    assert {"_smtp_methods", "_auth_methods", "_handle_hooks"} <= tables
    for name in tables:
        assert sorted(vars(ours)[name]) == sorted(vars(theirs)[name]), name
    assert len(dir(ours)) < len(object.__dir__(ours)) / 2  # the short list is in use
