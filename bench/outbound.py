"""Outbound speed: render + DKIM-sign + deliver through the outbox, against plain aiosmtplib.

    .venv/bin/python bench/outbound.py [--db sqlite|postgres] [--count 2000]

Both sides send to the same null aiosmtpd sink on loopback (its own process), one connection
per mail, 20 at a time (the outbox worker's batch). The baseline sends the very bytes our
mailer produced, prerendered, with aiosmtplib and nothing else; ours queues each mail through
Mailer.queue (template render, DKIM signature, outbox row) and lets the OutboxWorker claim and
deliver them: first one stage after the other in this process, then as deployed, with this
process queueing while a separate `workestra worker` delivers (it finds new rows by polling
each second, as it does in production). Prints mails/second for each and the ratio to the
baseline. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from _common import free_port, wait_port  # noqa: E402  (bench/_common.py)

sys.path.insert(0, str(ROOT))

import aiosmtplib  # noqa: E402

from gateway.config import Relay, Settings  # noqa: E402
from gateway.demo import seed_demo  # noqa: E402
from gateway.dkim_keys import generate  # noqa: E402
from gateway.intake import Person, TicketRequest  # noqa: E402
from gateway.outbound.outbox import OutboxWorker  # noqa: E402
from gateway.outbound.transport import SmtpRelay  # noqa: E402
from gateway.outbound.verp import return_path  # noqa: E402
from gateway.services import build_services  # noqa: E402

SINK = """
import asyncio, sys
from aiosmtpd.controller import Controller
class Null:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"
c = Controller(Null(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
sys.stdin.read()
"""
BATCH = 20


def database_url(kind: str, data: Path) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite:///{data / 'workestra.db'}", None
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    return ("postgresql+psycopg://postgres@127.0.0.1:5432/test"
            f"?options=-csearch_path%3D{schema}"), schema


async def baseline(raws: list[tuple[str, str, bytes]], port: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(raws), BATCH):
        await asyncio.gather(*(aiosmtplib.send(raw, sender=frm, recipients=[to],
                                               hostname="127.0.0.1", port=port)
                               for frm, to, raw in raws[i:i + BATCH]))
    return len(raws) / (time.perf_counter() - start)


def queue_all(services, count: int) -> float:
    """Render, sign and queue `count` agent-reply mails; returns the seconds it took."""
    ws = services.store.workspace_by_slug("acme")
    with services.store.tx() as s:
        ticket = services.intake.open_ticket(s, TicketRequest(
            workspace_id=ws.id, customer=Person("Jane", "jane@customer.test"),
            subject="Printer is on fire", description="Room 4."))
    start = time.perf_counter()
    for i in range(0, count, 50):  # 50 per transaction, as a busy team's replies would come
        with services.store.tx() as s:
            for j in range(i, min(count, i + 50)):
                services.mailer.queue(
                    s, ws, kind="customer/tracking_link", to_name=f"Customer {j}",
                    to_address=f"c{j}@customer.test", ticket=ticket, automatic=False,
                    context={"customer_name": f"Customer {j}",
                             "tracking_url": services.mailer.tracking_url(
                                 ws, ticket, f"c{j}@customer.test")})
    return time.perf_counter() - start


async def drain(services, port: int, count: int) -> float:
    worker = OutboxWorker(services.store, SmtpRelay(Relay("127.0.0.1", port)),
                          secret=services.settings.secret_key)
    start = time.perf_counter()
    sent = 0
    while sent < count:
        sent += await worker.deliver_due()
    return time.perf_counter() - start


def pipelined(services, port: int, count: int) -> float:
    """Seconds from the first mail queued here until a `workestra worker` process, delivering
    meanwhile, has sent the last."""
    settings = services.settings
    log = settings.data_dir / "worker.log"
    env = {**os.environ, "DATABASE_URL": settings.database_url,
           "WORKESTRA_DATA_DIR": str(settings.data_dir), "WORKESTRA_SECRET_KEY":
           settings.secret_key, "WORKESTRA_SMTP_RELAY": f"127.0.0.1:{port}"}
    worker = subprocess.Popen([sys.executable, "-m", "gateway", "worker"], env=env, cwd=ROOT,
                              stderr=log.open("wb"))
    try:
        while "worker started" not in log.read_text(errors="replace"):
            if worker.poll() is not None:
                raise SystemExit(f"the worker did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        start = time.perf_counter()
        queue_all(services, count)
        while any(m.state != "sent" for m in services.store.outbox()):
            time.sleep(0.02)
        return time.perf_counter() - start
    finally:
        worker.terminate()
        worker.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--count", type=int, default=2000)
    args = ap.parse_args()
    port = free_port()
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(port)], stdin=subprocess.PIPE)
    schema = None
    try:
        wait_port(port)
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp)
            url, schema = database_url(args.db, data)
            pair = generate()
            settings = Settings(data_dir=data, database_url=url,
                                public_url="http://127.0.0.1:8000",
                                secret_key="bench-secret-key-0123456789")
            services = build_services(settings)
            seed_demo(services.store)
            with services.store.tx() as s:
                ws = services.store.workspace_by_slug("acme", s=s)
                ws.dkim_selector, ws.dkim_private_key = "s1", pair.private_pem
                s.add(ws)
            queue_s = queue_all(services, args.count)
            rows = [m for m in services.store.outbox() if m.kind == "customer/tracking_link"]
            drain_s = asyncio.run(drain(services, port, len(rows) + 2))
            ours = args.count / (queue_s + drain_s)
            raws = [(return_path(settings.secret_key, m.mail_from, m.id), m.rcpt_to, m.raw)  # type: ignore[arg-type]
                    for m in rows]
            base = asyncio.run(baseline(raws, port))
            deployed = args.count / pipelined(services, port, args.count)
            services.close()
    finally:
        sink.stdin.close()  # type: ignore[union-attr]
        sink.wait(10)
        if schema:
            import psycopg

            with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test",
                                 autocommit=True) as c:
                c.execute(f'DROP SCHEMA "{schema}" CASCADE')
    print(f"outbound on {args.db}, {args.count} mails, {BATCH} connections at a time")
    print(f"  render+sign+queue: {args.count / queue_s:8.0f} mails/s ({queue_s:.2f} s)")
    print(f"  outbox delivery:   {args.count / drain_s:8.0f} mails/s ({drain_s:.2f} s)")
    print(f"  plain aiosmtplib:  {base:8.0f} mails/s (same bytes, prerendered)")
    print(f"  end to end, stages in turn:      {ours:6.0f} mails/s, "
          f"{ours / base:4.0%} of plain aiosmtplib")
    print(f"  end to end, queue here + worker: {deployed:6.0f} mails/s, "
          f"{deployed / base:4.0%} of plain aiosmtplib")


if __name__ == "__main__":
    main()
