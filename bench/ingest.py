"""Ingest speed over SMTP: `serve` against null aiosmtpd sinks measured in the same run.

    .venv/bin/python bench/ingest.py [--db sqlite|postgres] [--count 2000] [--connections 8]
                                     [--worker | --accept-only] [--relay] [--no-helpdesk]

The same mixed mail (new tickets, threaded replies, some attachments) goes, one message per
connection over 8 concurrent connections, to: a null sink (answers 250, keeps nothing), a sink
that fsyncs each message to its own file, and the real `serve --demo` on a fresh data dir.
Every server runs in its own process, so the client never shares an interpreter with it.
Prints messages/second for durable acceptance (every 250 back) and for fully processed mail
(every row done), their ratios to the sinks, and p50/p99 from the 250 to the ticket or
comment being visible (the row's processed_at). No figure here is asserted: the ratios are
what to compare between machines. With --relay the gateway sends its confirmations to a null
sink, as a deployment sends to its relay, instead of writing each to a file in DATA_DIR/sent/.

Fully processed mail is also put against django-helpdesk's own intake measured in the same run
on the same mail (bench/helpdesk_baseline.py: its `get_email` over a directory, its mail to a
null sink); --no-helpdesk skips that and compares with the figure quoted in issue 3 instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
from _common import cpu_seconds, free_port, postgres_schema, wait_port  # noqa: E402  (bench/_common.py)

RCPT = "support@acme.test"
DJANGO_HELPDESK = 140.0  # messages/s from a directory, quoted in issue 3 (--no-helpdesk only)
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


# -- the mail --------------------------------------------------------------------------------

def make_mails(count: int, seed: int = 3) -> list[tuple[str, bytes]]:
    """(envelope sender, bytes): ~60% new tickets, ~30% replies to an earlier one, ~10% files."""
    rng = random.Random(seed)
    words = ("printer invoice login error refund shipping password broken urgent please "
             "account order screen update billing delivery again today thanks help").split()
    mails: list[tuple[str, bytes]] = []
    firsts: list[tuple[str, str, str]] = []  # (sender, message-id, subject) of new tickets
    for i in range(count):
        m = EmailMessage()
        body = "\n\n".join(" ".join(rng.choices(words, k=rng.randint(8, 40))).capitalize() + "."
                           for _ in range(rng.randint(1, 4)))
        kind = rng.random()
        if kind < 0.3 and len(firsts) > 40:
            sender, parent, subject = firsts[rng.randrange(len(firsts) - 40)]  # well before
            m["Subject"] = f"Re: {subject}"
            m["In-Reply-To"] = f"<{parent}>"
            m["References"] = f"<{parent}>"
            body = f"{body}\n\nOn Monday you wrote:\n> {subject}\n> earlier text"
        else:
            sender = f"customer{i % 400}@example.test"
            m["Subject"] = f"{' '.join(rng.choices(words, k=4)).capitalize()} #{i}"
        m["From"] = f"Customer {i % 400} <{sender}>"
        m["To"] = RCPT
        mid = make_msgid(domain="example.test")
        m["Message-ID"] = mid
        m.set_content(body + "\n\n-- \nSent from my phone\n")
        if kind > 0.9:
            m.add_attachment(rng.randbytes(rng.randint(5_000, 60_000)), maintype="application",
                             subtype="pdf", filename=f"scan-{i}.pdf")
        if not m["Subject"].startswith("Re:"):
            firsts.append((sender, mid.strip("<>"), str(m["Subject"])))
        mails.append((sender, m.as_bytes(policy=m.policy.clone(linesep="\r\n"))))
    return mails


def header(raw: bytes, name: str) -> str | None:
    """One header of make_mails' mail (unfolded, ASCII), without its angle brackets."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    for line in head.splitlines():
        if line.lower().startswith(name.lower() + ":"):
            return line.split(":", 1)[1].strip().strip("<>")
    return None


def message_id(raw: bytes) -> str:
    found = header(raw, "Message-ID")
    assert found is not None, "make_mails gives every mail a Message-ID"
    return found


# -- the client: one message per connection, `connections` at a time -------------------------

def send_all(port: int, mails: list[tuple[str, bytes]], connections: int
             ) -> tuple[float, float, list[float]]:
    """(start, end, moment of each 250) as wall-clock times; raises if any mail is refused."""
    def one(item: tuple[str, bytes]) -> float:
        sender, raw = item
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
            smtp.sendmail(sender, [RCPT], raw)
            return time.time()

    start = time.time()
    with ThreadPoolExecutor(max_workers=connections) as pool:
        answered = list(pool.map(one, mails))
    return start, time.time(), answered


# -- the servers -----------------------------------------------------------------------------

class NullHandler:
    async def handle_DATA(self, server, session, envelope) -> str:
        return "250 OK"


class FsyncHandler:
    """Each message in its own file, fsynced before 250 (off the loop, so fsyncs overlap)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def handle_DATA(self, server, session, envelope) -> str:
        await asyncio.to_thread(self._write, envelope.original_content or envelope.content)
        return "250 OK"

    def _write(self, data: bytes) -> None:
        fd = os.open(self.folder / uuid.uuid4().hex, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)


def run_sink(kind: str, port: int, folder: str) -> None:
    """The sink process: an aiosmtpd server on the loop, until killed."""
    from aiosmtpd.smtp import SMTP

    handler = NullHandler() if kind == "null" else FsyncHandler(Path(folder))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="127.0.0.1", decode_data=False), "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


@contextlib.contextmanager
def sink(kind: str, folder: Path, pids: list[int] | None = None):
    """A sink process on a free port; its pid is appended to `pids`, for its CPU."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--sink", kind, "--port", str(port),
                             "--folder", str(folder)])
    if pids is not None:
        pids.append(proc.pid)
    try:
        wait_port(port, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def gateway(data: Path, database_url: str, separate_worker: bool = False,
            start_worker: bool = True, relay: int | None = None, pids: list[int] | None = None):
    """`serve --demo`; with `separate_worker`, `serve --no-worker` and a `workestra worker`
    (unless not `start_worker`: acceptance alone). Their pids go to `pids`, for their CPU."""
    smtp_port, http_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKESTRA_")}
    env.update(WORKESTRA_DATA_DIR=str(data), DATABASE_URL=database_url,
               WORKESTRA_SECRET_KEY="bench-secret-key-0123456789")
    if relay is not None:
        env["WORKESTRA_SMTP_RELAY"] = f"127.0.0.1:{relay}"
    log = (data.parent / "serve.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--demo", "--host", "127.0.0.1",
         "--smtp-port", str(smtp_port), "--http-port", str(http_port),
         *(["--no-worker"] if separate_worker else [])],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    procs = [proc]
    try:
        wait_port(smtp_port, proc)
        wait_port(http_port, proc)
        if separate_worker and start_worker:
            procs.append(subprocess.Popen([sys.executable, "-m", "gateway", "worker"], env=env,
                                          cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
        if pids is not None:
            pids.extend(p.pid for p in procs)
        yield smtp_port
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        log.close()


def wait_count(engine, sql: str, done, timeout: float, what: str) -> None:
    """Polls `sql` (a count) until `done(count)`; exits the bench, saying `what`, if never."""
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            found = conn.execute(text(sql)).scalar_one()
            conn.rollback()
            if done(found):
                return
            time.sleep(0.1)
    raise SystemExit(f"{what} after {timeout} s: {found}")


def wait_processed(engine, count: int, timeout: float = 900) -> dict[str, float]:
    """Message-ID -> processed_at (epoch seconds) once every row is done."""
    wait_count(engine, "SELECT count(*) FROM inboundmessage WHERE state = 'done'",
               lambda done: done >= count, timeout, f"messages processed of {count}")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT message_id, processed_at, outcome FROM inboundmessage"))
        out, outcomes = {}, {}
        for mid, at, outcome in rows:
            if isinstance(at, str):  # SQLite text timestamps through plain SQL
                at = datetime.fromisoformat(at)
            if at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
            out[mid] = at.timestamp()
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print(f"  outcomes: {outcomes}")
    return out


def wait_outbox(engine, timeout: float = 300) -> None:
    """Until the outbox has nothing queued: its sends are part of what a message costs."""
    wait_count(engine, "SELECT count(*) FROM outboundmessage WHERE state = 'queued'",
               lambda queued: queued == 0, timeout, "mails still queued")


def percentile(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


def bench(db: str, count: int, connections: int, pg_url: str, separate_worker: bool,
          accept_only: bool = False, relay: bool = False, helpdesk: bool = True) -> None:
    mails = make_mails(count)
    ids = [message_id(raw) for _, raw in mails]
    size = sum(len(raw) for _, raw in mails)
    print(f"{count} mails ({size / count / 1024:.1f} KiB mean), {connections} connections, "
          f"one message per connection, {os.cpu_count()} CPUs, database {db}, "
          + ("serve --no-worker, no worker: acceptance alone" if accept_only else
             "serve --no-worker + worker" if separate_worker else "one serve process")
          + (", its mail to a null SMTP relay" if relay else ", its mail to DATA_DIR/sent/"))
    with tempfile.TemporaryDirectory(prefix="workestra-bench-") as tmp:
        root = Path(tmp)
        rates = {}
        for kind in ("null", "fsync"):
            folder = root / kind
            folder.mkdir()
            with sink(kind, folder) as port:
                start, end, _ = send_all(port, mails, connections)
            rates[kind] = count / (end - start)
            print(f"aiosmtpd {kind} sink: {rates[kind]:8.0f} msg/s")

        with contextlib.ExitStack() as stack:
            data = root / "data"
            if db == "postgres":
                url = stack.enter_context(postgres_schema(pg_url))
                engine_url = "postgresql+psycopg://" + url.split("://", 1)[1]
            else:
                url = engine_url = f"sqlite:///{data / 'workestra.db'}"
            pids: list[int] = []  # the gateway's processes, and the relay sink they send to
            relay_port = (stack.enter_context(sink("null", root / "null", pids))
                          if relay else None)
            port = stack.enter_context(gateway(data, url, separate_worker or accept_only,
                                               start_worker=not accept_only, relay=relay_port,
                                               pids=pids))
            relay_pids, gateway_pids = pids[:int(relay)], pids[int(relay):]
            before = cpu_seconds(gateway_pids), cpu_seconds(relay_pids), time.process_time()
            start, end, answered = send_all(port, mails, connections)
            client_cpu = time.process_time() - before[2]
            if accept_only:
                accept = count / (end - start)
                print(f"serve, durable acceptance: {accept:8.0f} msg/s  = "
                      f"{accept / rates['null']:.2f} x null sink (nothing processed)")
                return
            engine = create_engine(engine_url)
            processed = wait_processed(engine, count)
            wait_outbox(engine)
            cpu = {"gateway": cpu_seconds(gateway_pids) - before[0],
                   "relay sink": cpu_seconds(relay_pids) - before[1], "client": client_cpu}
            engine.dispose()
        accept = count / (end - start)
        finished = count / (max(processed.values()) - start)
        visible = [processed[mid] - at for mid, at in zip(ids, answered, strict=True)]
        print(f"serve, durable acceptance: {accept:8.0f} msg/s  = "
              f"{accept / rates['null']:.2f} x null sink, {accept / rates['fsync']:.2f} x "
              "fsync sink")
        print(f"serve, fully processed:    {finished:8.0f} msg/s")
        print(f"250 -> visible: p50 {percentile(visible, 50) * 1000:.0f} ms, "
              f"p99 {percentile(visible, 99) * 1000:.0f} ms")
        print("CPU a message, its confirmation sent: "
              + ", ".join(f"{who} {seconds / count * 1000:.2f} ms" for who, seconds in
                          cpu.items()) + f" (all: {sum(cpu.values()) / count * 1000:.2f} ms"
              + (", PostgreSQL's own not counted)" if db == "postgres" else ")"))
    if not helpdesk:
        print(f"  = {finished / DJANGO_HELPDESK:.1f} x django-helpdesk's quoted "
              f"{DJANGO_HELPDESK:.0f}/s (not measured here)")
        return
    from helpdesk_baseline import measure  # after the gateway: the two never share the CPUs

    hd = measure(count)
    print(f"django-helpdesk {hd['helpdesk']} get_email, same mail, files in arrival order: "
          f"{hd['rate']:8.0f} msg/s, {hd['cpu_ms']:.1f} ms CPU a message "
          f"({hd['tickets']} tickets, {hd['replies_threaded']} of {hd['replies']} replies "
          f"threaded, {hd['mails_sent']} mails sent)")
    if hd["failed"]:
        raise SystemExit(f"django-helpdesk's run failed: {hd['failed']}")
    ours = cpu["gateway"] / count * 1000
    print(f"serve, fully processed = {finished / hd['rate']:.1f} x django-helpdesk measured "
          f"in this run; the gateway's CPU a message = 1 / {hd['cpu_ms'] / ours:.1f} of its")
    # What the CPUs allow: every process of the run busy all the time, none ever waiting.
    cpus, every = os.cpu_count() or 1, sum(cpu.values()) / count
    others = (cpu["relay sink"] + cpu["client"]) / count
    print(f"on {cpus} CPUs, {every * 1000:.2f} ms of CPU a message in all allows at most "
          f"{cpus / every:.0f} msg/s = {cpus / every / hd['rate']:.1f} x django-helpdesk; 5 x "
          f"would need the gateway at {(cpus / (5 * hd['rate']) - others) * 1000:.2f} ms "
          "or less")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--worker", action="store_true",
                   help="serve --no-worker beside a separate `workestra worker` process")
    p.add_argument("--accept-only", action="store_true",
                   help="serve --no-worker and no worker: acceptance alone, nothing processed")
    p.add_argument("--relay", action="store_true",
                   help="send the gateway's mail to a null SMTP sink, not to files")
    p.add_argument("--no-helpdesk", action="store_true",
                   help="skip measuring django-helpdesk (bench/helpdesk_baseline.py)")
    p.add_argument("--postgres-url", default=os.environ.get("WORKESTRA_TEST_POSTGRES",
                                                            DEFAULT_PG))
    p.add_argument("--sink", choices=("null", "fsync"), help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.sink:
        run_sink(args.sink, args.port, args.folder)
    else:
        bench(args.db, args.count, args.connections, args.postgres_url, args.worker,
              args.accept_only, args.relay, not args.no_helpdesk)


if __name__ == "__main__":
    main()
