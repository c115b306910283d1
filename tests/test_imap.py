"""IMAP support inboxes against a real Dovecot, with the real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import argparse
import asyncio
import ssl
from collections.abc import Callable
from typing import Any

from sqlalchemy import update

from gateway.inbound import imap_cli
from gateway.inbound.imap import ImapPoller, ImapPollers
from gateway.inbound.spool import Spool
from gateway.services import Services
from storage import inboxes
from storage.models import ImapInbox
from tests.conftest import customer_mail
from tests.dovecot import PASSWORD, USER, CuttingProxy, Dovecot, dovecot

FAST = {"backoff": (0.2, 1.0), "poll_interval": 3600.0, "timeout": 10.0}
# For the tests that sit through several failed attempts: the same doubling, from 50 ms up to
# 200 ms between attempts (the production default is 1 s doubling up to 300 s)
QUICK_BACKOFF = (0.05, 0.2)


def raw_mail(subject: str, *, sender: str = "jane@customer.test", pad: int = 0,
             **headers: str) -> bytes:
    """A customer's mail as the delivering server stored it (with its Return-Path)."""
    m = customer_mail(subject, f"About {subject}.\n" + "padding line\n" * pad,
                      sender=f"Jane Customer <{sender}>", **headers)
    return f"Return-Path: <{sender}>\r\n".encode() + m.as_bytes(
        policy=m.policy.clone(linesep="\r\n"))


def new_inbox(services: Services, server: Dovecot, **kw: Any) -> int:
    ws = services.store.workspace_by_slug("acme")
    assert ws is not None
    row = inboxes.add_inbox(services.store, workspace_id=ws.id,  # type: ignore[arg-type]
                            host=kw.pop("host", "127.0.0.1"), port=kw.pop("port", server.port),
                            security=kw.pop("security", "none"), username=USER,
                            password=kw.pop("password", PASSWORD), **kw)
    return row.id  # type: ignore[return-value]


def subjects(services: Services) -> list[str]:
    ws = services.store.workspace_by_slug("acme")
    return sorted(t.subject for t in services.store.tickets(ws.id))  # type: ignore[arg-type]


def inbox_row(services: Services, inbox_id: int) -> ImapInbox:
    row = inboxes.inbox(services.store, inbox_id)
    assert row is not None
    return row


async def until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Waits for `check()` to become truthy (run off the loop); fails naming `what`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await asyncio.to_thread(check)
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.1)


class Running:
    """A poller on a task, stopped (and its spool closed) on exit."""

    def __init__(self, services: Services, inbox_id: int, **options: Any) -> None:
        self.services = services
        self.spool = Spool(services.store, services.blobs)
        self.spooled: list[int] = []
        self.poller = ImapPoller(inbox_id, services.store, self.spool, self.process,
                                 **{**FAST, **options})
        self.stop = asyncio.Event()

    def process(self, inbound_id: int) -> None:
        self.spooled.append(inbound_id)
        self.services.pipeline.process(inbound_id)

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.poller.run(self.stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)
        self.spool.close()

    async def idle(self) -> None:
        await until(lambda: self.poller.state == "idle", "the poller to wait in IDLE")


# -- 1. new mail becomes tickets; the mailbox is changed only once it is durable -------------

def test_new_mail_becomes_tickets_and_is_flagged_or_moved_only_after_it_is_durable(services):
    with dovecot() as server:
        server.create("Support")
        server.append(raw_mail("Printer on fire"))
        server.append(raw_mail("Cannot log in", sender="bob@customer.test"))
        server.append(raw_mail("Invoice is wrong"), folder="Support")
        flagging = new_inbox(services, server)
        moving = new_inbox(services, server, folder="Support", done_folder="Done")
        disabled = new_inbox(services, server, port=1, folder="Nowhere")
        with services.store.tx() as s:
            s.exec(update(ImapInbox).where(ImapInbox.id == disabled).values(enabled=False))
        at_spool: list[set[str] | None] = []

        def on_spooled(inbound_id: int) -> None:
            # The message is durable now and becomes a ticket; the server must not know yet.
            services.pipeline.process(inbound_id)
            row = services.store.inbound(inbound_id)
            assert row is not None and row.ticket_id is not None and row.message_id
            folder = "Support" if row.imap_inbox_id == moving else "INBOX"
            at_spool.append(server.flags_by_message_id(folder).get(row.message_id))

        async def scenario() -> ImapPollers:
            stop = asyncio.Event()
            pollers = ImapPollers(services, on_spooled, **FAST)
            task = asyncio.create_task(pollers.run(stop))
            await until(lambda: len(subjects(services)) == 3, "three tickets")
            await until(lambda: all(p.state == "idle" for p in pollers.pollers.values())
                        and len(pollers.pollers) == 2, "both pollers to wait in IDLE")
            stop.set()
            await asyncio.wait_for(task, 30)
            return pollers

        pollers = asyncio.run(scenario())

        assert subjects(services) == ["Cannot log in", "Invoice is wrong", "Printer on fire"]
        assert set(pollers.pollers) == {flagging, moving}  # the disabled inbox is left alone
        # when each message had become a ticket, it was still unread and in its folder
        assert at_spool == [set(), set(), set()]
        assert [flags for _, flags in server.folder("INBOX")] == [{"\\Seen"}, {"\\Seen"}]
        assert server.folder("Support") == []
        assert len(server.folder("Done")) == 1
        rows = services.store.inbound_messages()
        assert {(r.channel, r.imap_inbox_id) for r in rows} == {("imap", flagging),
                                                                ("imap", moving)}
        assert sorted(r.mail_from for r in rows) == ["bob@customer.test", "jane@customer.test",
                                                     "jane@customer.test"]
        assert all(r.outcome == "new_ticket" for r in rows)
        first = inbox_row(services, flagging)
        assert first.last_uid == 2 and first.uidvalidity and first.last_error is None
        assert inbox_row(services, disabled).last_error is None


# -- 2. a restart reads only new mail; a new UIDVALIDITY reads again without duplicates ------

def test_restart_resumes_and_a_changed_uidvalidity_rereads_without_duplicate_tickets(services):
    first, second = raw_mail("First problem"), raw_mail("Second problem")
    with dovecot() as server:
        server.create("Support")
        server.append(first, folder="Support")
        server.append(second, folder="Support")
        inbox_id = new_inbox(services, server, folder="Support")

        async def session(tickets: int) -> list[int]:
            async with Running(services, inbox_id) as run:
                await until(lambda: len(subjects(services)) == tickets, f"{tickets} tickets")
                await run.idle()
            return run.spooled

        assert len(asyncio.run(session(2))) == 2
        server.append(raw_mail("Third problem"), folder="Support")
        assert len(asyncio.run(session(3))) == 1  # a new poller took only the new message
        before = inbox_row(services, inbox_id)
        assert before.last_uid == 3

        # The folder is recreated: same UIDs, other messages. Everything is read again.
        server.delete("Support")
        server.create("Support")
        server.append(first, folder="Support")  # the very same bytes
        resent = second.replace(b"Subject:", b"X-Resent: yes\r\nSubject:", 1)
        assert resent != second  # same Message-ID, other bytes: the pipeline's dedupe
        server.append(resent, folder="Support")
        server.append(raw_mail("Fourth problem"), folder="Support")
        asyncio.run(session(4))

        after = inbox_row(services, inbox_id)
        assert after.uidvalidity != before.uidvalidity and after.last_uid == 3
        assert subjects(services) == ["First problem", "Fourth problem", "Second problem",
                                      "Third problem"]
        outcomes = sorted(r.outcome or "" for r in services.store.inbound_messages())
        assert outcomes == ["ignored", "new_ticket", "new_ticket", "new_ticket", "new_ticket"]
        assert all("\\Seen" in flags for _, flags in server.folder("Support"))


# -- 3. IDLE: new mail arrives without waiting for a poll ------------------------------------

def test_mail_arriving_while_idle_is_picked_up_without_a_poll(services):
    with dovecot() as server:
        inbox_id = new_inbox(services, server)

        async def scenario() -> None:
            async with Running(services, inbox_id, poll_interval=3600.0) as run:
                await run.idle()
                server.append(raw_mail("Arrived during IDLE"))
                await until(lambda: subjects(services) == ["Arrived during IDLE"],
                            "the ticket from IDLE's news", timeout=15)
                assert run.poller.failures == 0

        asyncio.run(scenario())
        assert [flags for _, flags in server.folder("INBOX")] == [{"\\Seen"}]


def test_without_idle_the_folder_is_polled(services):
    # The same server, advertising no IDLE after login: the poller must not use it.
    with dovecot(extra_config="imap_capability = IMAP4rev1 LITERAL+ UIDPLUS MOVE\n") as server:
        inbox_id = new_inbox(services, server)

        async def scenario() -> None:
            async with Running(services, inbox_id, poll_interval=0.3) as run:
                await until(lambda: run.poller.state == "polling", "the poller to poll")
                server.append(raw_mail("Found by polling"))
                await until(lambda: subjects(services) == ["Found by polling"], "the ticket")
                assert run.poller.state != "idle" and run.poller.failures == 0

        asyncio.run(scenario())


# -- 4. the connection drops mid-fetch, or the server restarts: nothing lost or doubled ------

def test_connection_dropped_mid_fetch_and_before_the_flag_loses_and_doubles_nothing(services):
    with dovecot() as server:
        for i in range(3):
            server.append(raw_mail(f"Big message {i}", pad=3000))

        async def scenario() -> tuple[CuttingProxy, ImapPoller]:
            proxy = CuttingProxy(server.port)
            await proxy.start()
            proxy.cut_on("server", b" FETCH (")  # halfway through the first message's bytes
            proxy.cut_on("client", b"UID STORE")  # spooled, but the flag never arrives
            inbox_id = new_inbox(services, server, port=proxy.port)
            try:
                async with Running(services, inbox_id) as run:
                    await until(lambda: len(subjects(services)) == 3, "three tickets")
                    await run.idle()
            finally:
                await proxy.close()
            return proxy, run.poller

        proxy, poller = asyncio.run(scenario())

        assert proxy.cut_count == 2 and proxy.connections >= 3 and poller.failures >= 2
        assert subjects(services) == [f"Big message {i}" for i in range(3)]
        assert len(services.store.inbound_messages()) == 3  # not even a duplicate row
        assert [flags for _, flags in server.folder("INBOX")] == [{"\\Seen"}] * 3


def test_server_restart_is_survived_with_backoff(services):
    with dovecot() as server:
        inbox_id = new_inbox(services, server)

        async def scenario() -> None:
            async with Running(services, inbox_id, backoff=QUICK_BACKOFF) as run:
                await run.idle()
                await asyncio.to_thread(server.stop, crash=True)  # no BYE, no FIN handshake
                await until(lambda: run.poller.failures >= 3, "several failed reconnects")
                error = inbox_row(services, inbox_id).last_error or ""
                assert error == f"cannot connect to 127.0.0.1:{server.port}: connection refused"
                assert not run.task.done()
                await asyncio.to_thread(server.start)
                server.append(raw_mail("After the restart"))
                await until(lambda: subjects(services) == ["After the restart"],
                            "the ticket after the restart")
                await until(lambda: inbox_row(services, inbox_id).last_error is None,
                            "the error to clear once connected again")

        asyncio.run(scenario())


# -- 5. a wrong password is recorded, retried, and recovers once fixed -----------------------

def test_wrong_password_is_recorded_and_retried_until_fixed(services):
    with dovecot() as server:
        server.append(raw_mail("Waiting for the right password"))
        inbox_id = new_inbox(services, server, password="not the password")

        async def scenario() -> None:
            async with Running(services, inbox_id, backoff=QUICK_BACKOFF) as run:
                error = await until(lambda: inbox_row(services, inbox_id).last_error,
                                    "the error to be recorded")
                assert f"login as {USER} on 127.0.0.1:{server.port} refused" in error
                assert "Authentication failed" in error
                await until(lambda: run.poller.failures >= 3, "retries")
                assert not run.task.done() and subjects(services) == []
                with services.store.tx() as s:
                    s.exec(update(ImapInbox).where(ImapInbox.id == inbox_id)
                           .values(password=PASSWORD))
                await until(lambda: subjects(services) == ["Waiting for the right password"],
                            "the ticket once the password is right")
                assert inbox_row(services, inbox_id).last_error is None

        asyncio.run(scenario())


# -- TLS and STARTTLS, with a certificate the client must verify -----------------------------

def test_tls_and_starttls_inboxes_read_mail_and_an_untrusted_certificate_is_refused(services):
    with dovecot(tls=True) as server:
        server.create("ViaTls")
        server.create("ViaStarttls")
        server.append(raw_mail("Over IMAPS"), folder="ViaTls")
        server.append(raw_mail("Over STARTTLS"), folder="ViaStarttls")
        new_inbox(services, server, security="tls", port=server.tls_port, folder="ViaTls")
        new_inbox(services, server, security="starttls", folder="ViaStarttls")
        trusted = ssl.create_default_context(cafile=str(server.ca_file))

        async def scenario() -> None:
            stop = asyncio.Event()
            pollers = ImapPollers(services, services.pipeline.process, ssl_context=trusted,
                                  **FAST)
            task = asyncio.create_task(pollers.run(stop))
            try:
                await until(lambda: len(subjects(services)) == 2, "a ticket from each inbox")
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)
            assert all(p.failures == 0 for p in pollers.pollers.values())

        asyncio.run(scenario())
        assert subjects(services) == ["Over IMAPS", "Over STARTTLS"]

        untrusting = new_inbox(services, server, security="tls", port=server.tls_port)

        async def refused() -> None:
            async with Running(services, untrusting):  # the system's CAs only
                error = await until(lambda: inbox_row(services, untrusting).last_error,
                                    "the TLS error to be recorded")
                assert f"TLS with 127.0.0.1:{server.tls_port} failed" in error
                assert "CERTIFICATE_VERIFY_FAILED" in error

        asyncio.run(refused())


# -- the CLI ---------------------------------------------------------------------------------

def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="workestra")
    imap_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_adds_and_lists_inboxes(services, monkeypatch, capsys):
    settings = services.settings
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("WORKESTRA_SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("SUPPORT_IMAP_PASSWORD", "from the environment")
    data = ["--data-dir", str(settings.data_dir)]

    assert run_cli(["inboxes", "list", *data]) == 0
    assert capsys.readouterr().out.startswith("no IMAP inboxes")

    assert run_cli(["inboxes", "add", "acme", "--host", "imap.acme.test", "--user",
                    "support@acme.test", "--password-env", "SUPPORT_IMAP_PASSWORD",
                    "--move-to", "Done", *data]) == 0
    out = capsys.readouterr().out
    assert out.startswith("added inbox ") and "imap.acme.test:993 (tls)" in out
    assert "then moved to Done" in out and "from the environment" not in out
    [row] = inboxes.enabled_inboxes(services.store)
    assert (row.password, row.folder, row.done_folder) == ("from the environment", "INBOX",
                                                           "Done")

    assert run_cli(["inboxes", "add", "nope", "--host", "h", "--user", "u", "--password", "p",
                    *data]) == 1
    assert "no workspace 'nope'" in capsys.readouterr().err
    assert run_cli(["inboxes", "add", "acme", "--host", "h", "--user", "u", "--password-env",
                    "UNSET_VARIABLE_FOR_TEST", *data]) == 2
    assert "UNSET_VARIABLE_FOR_TEST is not set" in capsys.readouterr().err

    assert run_cli(["inboxes", "add", "acme", "--host", "mail.acme.test", "--security",
                    "starttls", "--user", "u", "--password", "p", *data]) == 0
    capsys.readouterr()
    assert run_cli(["inboxes", "list", *data]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert "mail.acme.test:143 (starttls), folder INBOX, then flagged \\Seen" in lines[1]

    first_id = inboxes.inboxes_with_workspace(services.store)[0][0].id
    assert run_cli(["inboxes", "disable", str(first_id), *data]) == 0
    assert capsys.readouterr().out.startswith(f"inbox {first_id} disabled")
    assert [r.host for r in inboxes.enabled_inboxes(services.store)] == ["mail.acme.test"]
    assert run_cli(["inboxes", "list", *data]) == 0
    assert "; disabled, read up to UID" in capsys.readouterr().out.splitlines()[0]
    assert run_cli(["inboxes", "enable", str(first_id), *data]) == 0
    assert len(inboxes.enabled_inboxes(services.store)) == 2
    assert run_cli(["inboxes", "disable", "999", *data]) == 1
    assert "no inbox 999" in capsys.readouterr().err
