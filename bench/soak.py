"""Bounded soak: SMTP ingest, portal submissions, tracking reads and agent replies at once.

    .venv/bin/python bench/soak.py [--minutes 3] [--db postgres|sqlite] [--postgres-url URL]
                                   [--scale 1.0] [--drain-timeout 180]

Runs the gateway as in production: `serve --demo --no-worker` plus one `workestra worker`, on a
throwaway PostgreSQL schema (dropped afterwards) or a fresh SQLite file, with a loopback
aiosmtpd sink (its own process) as the relay, so every outbound mail is really delivered. The
bench process offers a fixed load per stream with asyncio clients (SMTP 20 mails/s, portal
submissions 5/s, tracking-page reads 50/s, agent replies through the agent API 5/s; `--scale`
multiplies them all). Operation i of a stream starts at i/rate whatever the replies, and its
latency counts from that moment, so a server that falls behind cannot hide behind a client that
slows down with it.

Every 10 s one row: per stream the completed ops/s, the window's p99 and that p99 as a multiple
of the stream's p99 in the first window (the baseline, measured in the same run: growth over
time is what a soak looks for), errors so far, VmRSS of serve and of the worker, mail spooled
and not yet processed, mail queued and not yet delivered, mail the sink received. At the end:
totals, p50/p99, errors by reason, RSS growth (first window vs last window of min(60 s, a third
of the run)) and its least-squares slope, and whether every accepted mail was processed and
every outbound mail delivered once the queues drained. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
from _common import free_port, postgres_schema, wait_port  # noqa: E402  (bench/_common.py)

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
RCPT = "support@acme.test"
RATES = {"smtp": 20.0, "submit": 5.0, "track": 50.0, "reply": 5.0}  # offered ops/s
WINDOW = 10.0  # seconds per printed row
RSS_EVERY = 2.0  # seconds between RSS samples
IN_FLIGHT = 64  # per stream; later ops wait (and their latency shows it)
OP_TIMEOUT = 60.0
WORDS = ("printer invoice login error refund shipping password broken urgent please account "
         "order screen update billing delivery again today thanks help").split()


class Failed(Exception):
    """An operation that got an answer a user would call an error."""


# -- processes -------------------------------------------------------------------------------

def run_sink(port: int, path: str) -> None:
    """The relay: an aiosmtpd server that writes each delivered mail's Message-ID on a line."""
    from aiosmtpd.smtp import SMTP

    out = open(path, "a", buffering=1)  # noqa: SIM115 - open for the process's life

    class Keep:
        async def handle_DATA(self, server, session, envelope) -> str:
            head = (envelope.original_content or envelope.content).split(b"\r\n\r\n", 1)[0]
            m = re.search(rb"(?im)^message-id:\s*<?([^>\r\n]+)>?", head)
            out.write((m.group(1).decode(errors="replace") if m else "-") + "\n")
            return "250 OK"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(Keep(), hostname="127.0.0.1", decode_data=False), "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


@dataclass
class Gateway:
    smtp_port: int
    http_port: int
    serve: subprocess.Popen
    worker: subprocess.Popen
    env: dict[str, str]
    sink_file: Path
    logs: dict[str, Path]


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@contextlib.contextmanager
def gateway(data: Path, database_url: str, logs: Path) -> Iterator[Gateway]:
    """The sink, `serve --demo --no-worker` and one `worker`, each its own process."""
    sink_port, smtp_port, http_port = free_port(), free_port(), free_port()
    sink_file = data.parent / "sink.txt"
    procs = [subprocess.Popen([sys.executable, __file__, "--sink-port", str(sink_port),
                               "--sink-file", str(sink_file)])]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKESTRA_")}
    env.update(WORKESTRA_DATA_DIR=str(data), DATABASE_URL=database_url,
               WORKESTRA_SECRET_KEY="soak-secret-key-0123456789",
               WORKESTRA_SMTP_RELAY=f"127.0.0.1:{sink_port}",
               WORKESTRA_PUBLIC_URL=f"http://127.0.0.1:{http_port}",
               WORKESTRA_LIMIT_SUBMIT="1000000/hour")
    paths = {"serve": logs.with_suffix(".serve.log"), "worker": logs.with_suffix(".worker.log")}
    files = {k: p.open("wb") for k, p in paths.items()}
    try:
        wait_port(sink_port, procs[0])
        serve = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--demo", "--no-worker", "--host",
             "127.0.0.1", "--smtp-port", str(smtp_port), "--http-port", str(http_port)],
            env=env, cwd=ROOT, stdout=files["serve"], stderr=subprocess.STDOUT)
        procs.append(serve)
        wait_port(smtp_port, serve)
        wait_port(http_port, serve)
        worker = subprocess.Popen([sys.executable, "-m", "gateway", "worker"], env=env, cwd=ROOT,
                                  stdout=files["worker"], stderr=subprocess.STDOUT)
        procs.append(worker)
        yield Gateway(smtp_port, http_port, serve, worker, env, sink_file, paths)
    finally:
        _stop(procs[::-1])
        for f in files.values():
            f.close()


def agent_key(gw: Gateway) -> str:
    done = subprocess.run([sys.executable, "-m", "gateway", "agents", "key", "acme",
                           "alex@acme.test"], env=gw.env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    if done.returncode != 0:
        raise SystemExit(f"agents key failed: {done.stderr.strip()}")
    return done.stdout.splitlines()[-1].strip()


def rss_mb(pid: int) -> float:
    """VmRSS of a live process, in MB (0 once it has gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    m = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(m.group(1)) / 1024 if m else 0.0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (0 once it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- a small keep-alive HTTP/1.1 client (one request in flight per connection) --------------

@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]


class Http:
    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                      body: bytes = b"") -> Reply:
        """Retries once on a fresh connection when a reused one was closed by the server."""
        reused = bool(self.idle)
        conn = self.idle.pop() if reused else await self._open()
        try:
            reply = await self._exchange(conn, method, path, headers or {}, body)
        except (asyncio.IncompleteReadError, ConnectionError):
            conn[1].close()
            if not reused:
                raise
            conn = await self._open()
            reply = await self._exchange(conn, method, path, headers or {}, body)
        except BaseException:
            conn[1].close()
            raise
        if "close" in (v.lower() for v in reply.header("connection")):
            conn[1].close()
        else:
            self.idle.append(conn)
        return reply

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def _exchange(self, conn, method: str, path: str, headers: dict[str, str],
                        body: bytes) -> Reply:
        reader, writer = conn
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        pairs = [(k.strip().lower(), v.strip()) for k, _, v in
                 (line.partition(":") for line in head[1:] if line)]
        got = dict(pairs)
        if "content-length" in got:
            data = await reader.readexactly(int(got["content-length"]))
        elif got.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
            await reader.readuntil(b"\r\n")
            data = b"".join(parts)
        else:
            data = b""
        return Reply(status, pairs, data)

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


# -- one stream of offered load --------------------------------------------------------------

def reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    text = re.sub(r"\d{4,}", "N", text)[:90]  # ports and ids fold; status codes stay
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile of unsorted values (0 for none)."""
    if not values:
        return 0.0
    xs = sorted(values)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


@dataclass
class Stream:
    name: str
    rate: float
    op: Callable[[], Awaitable[None]]
    done: list[tuple[float, float]] = field(default_factory=list)  # (finished at, latency)
    errors: Counter = field(default_factory=Counter)
    cursor: int = 0  # first record no row has shown yet
    first_p99: float = 0.0
    unfinished: int = 0

    async def drive(self, t0: float, end: float) -> None:
        """Operation i starts at t0 + i/rate; its latency counts from then."""
        gate = asyncio.Semaphore(IN_FLIGHT)
        tasks: set[asyncio.Task] = set()
        i = 0
        while (due := t0 + i / self.rate) < end:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            task = asyncio.create_task(self._one(due, gate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=OP_TIMEOUT)
            for task in late:
                task.cancel()
            self.unfinished = len(late)

    async def _one(self, due: float, gate: asyncio.Semaphore) -> None:
        async with gate:
            try:
                await asyncio.wait_for(self.op(), OP_TIMEOUT)
            except Exception as e:  # every failure is counted by reason, none stops the run
                self.errors[reason(e)] += 1
                return
        now = time.monotonic()
        self.done.append((now, now - due))

    def window(self, until: float) -> list[float]:
        """Latencies of the operations finished since the last row, up to `until`."""
        start = self.cursor
        while self.cursor < len(self.done) and self.done[self.cursor][0] < until:
            self.cursor += 1
        return [lat for _, lat in self.done[start:self.cursor]]


# -- the clients -----------------------------------------------------------------------------

@dataclass
class Tracked:
    ref: str
    link: str  # path and query with the signed token, as in the confirmation
    cookie: str = ""


class Load:
    """What the four streams do, and what they have learnt (tickets and their links)."""

    def __init__(self, gw: Gateway, key: str, seed: int = 11) -> None:
        self.gw, self.key = gw, key
        self.rng = random.Random(seed)
        self.http = {name: Http(gw.http_port) for name in ("submit", "track", "reply")}
        self.tickets: list[Tracked] = []
        self.sent: list[tuple[str, str, str, float]] = []  # (sender, msgid, subject, when)
        self.accepted = 0
        self.n = 0
        self.csrf = ("", "")  # (cookie, form token)

    async def prepare(self) -> None:
        """The CSRF pair a browser would get from the form, and a first ticket to track."""
        got = await self.http["submit"].request("GET", "/portal/acme/submit")
        cookie = next(c for c in got.header("set-cookie") if c.startswith("wk_csrf="))
        token = re.search(rb'name="csrf_token" value="([^"]+)"', got.body)
        if token is None:
            raise SystemExit("no CSRF token on the submit page")
        self.csrf = (cookie.split(";", 1)[0], token.group(1).decode())
        await self.submit()

    def _words(self, lo: int, hi: int) -> str:
        return " ".join(self.rng.choices(WORDS, k=self.rng.randint(lo, hi)))

    def next_mail(self) -> tuple[str, bytes, tuple[str, str, str] | None]:
        """~70% new tickets from new senders, ~25% replies to a mail sent 10 s ago or more,
        ~5% with a 20 KB attachment. Returns (sender, bytes, what a later reply needs)."""
        self.n += 1
        m = EmailMessage()
        body = "\n\n".join(self._words(8, 40).capitalize() + "." for _ in range(3))
        old = [x for x in self.sent[-2000:] if time.monotonic() - x[3] > 10]
        if old and self.rng.random() < 0.25:
            sender, parent, subject, _ = self.rng.choice(old)
            m["Subject"] = f"Re: {subject}"
            m["In-Reply-To"] = m["References"] = f"<{parent}>"
            body += f"\n\nOn Monday you wrote:\n> {subject}"
        else:
            sender = f"mailer{self.n}@customer.test"
            m["Subject"] = f"{self._words(3, 6).capitalize()} #{self.n}"
        m["From"] = f"Customer {self.n} <{sender}>"
        m["To"] = RCPT
        m["Message-ID"] = mid = make_msgid(domain="customer.test")
        m.set_content(body + "\n\n-- \nSent from my phone\n")
        if self.rng.random() < 0.05:
            m.add_attachment(self.rng.randbytes(20_000), maintype="application",
                             subtype="octet-stream", filename=f"log-{self.n}.bin")
        first = None if str(m["Subject"]).startswith("Re:") else (
            sender, mid.strip("<>"), str(m["Subject"]))
        return sender, m.as_bytes(policy=m.policy.clone(linesep="\r\n")), first

    async def smtp(self) -> None:
        import aiosmtplib

        sender, raw, first = self.next_mail()
        await aiosmtplib.send(raw, sender=sender, recipients=[RCPT], hostname="127.0.0.1",
                              port=self.gw.smtp_port, timeout=OP_TIMEOUT, start_tls=False)
        self.accepted += 1
        if first:  # accepted: a later mail may reply to it
            self.sent.append((*first, time.monotonic()))

    async def submit(self) -> None:
        self.n += 1
        form = urlencode({"csrf_token": self.csrf[1], "name": f"Visitor {self.n}",
                          "email": f"visitor{self.n}@customer.test",
                          "subject": f"{self._words(3, 6).capitalize()} #{self.n}",
                          "description": self._words(20, 80), "type": "Bug Report"}).encode()
        got = await self.http["submit"].request(
            "POST", "/portal/acme/submit", {"Cookie": self.csrf[0],
                                            "Content-Type": "application/x-www-form-urlencoded"},
            form)
        link = re.search(rb'href="http://[^/"]+(/portal/acme/tickets/(TKT-\d+)\?t=[^"]+)"',
                         got.body)
        if got.status != 200 or link is None:
            raise Failed(f"submission answered {got.status} without a tracking link")
        self.tickets.append(Tracked(link.group(2).decode(), html.unescape(link.group(1).decode())))

    async def track(self) -> None:
        t = self.rng.choice(self.tickets)
        http = self.http["track"]
        if not t.cookie:  # the first visit follows the mailed link: token swapped for a cookie
            got = await http.request("GET", t.link)
            cookie = next((c for c in got.header("set-cookie") if c.startswith("wk_ticket=")),
                          None)
            if got.status != 303 or cookie is None:
                raise Failed(f"tracking link answered {got.status} without a cookie")
            t.cookie = cookie.split(";", 1)[0]
        got = await http.request("GET", f"/portal/acme/tickets/{t.ref}", {"Cookie": t.cookie})
        if got.status != 200 or t.ref.encode() not in got.body:
            raise Failed(f"tracking page answered {got.status}")

    async def reply(self) -> None:
        t = self.rng.choice(self.tickets)
        body = json.dumps({"body": f"Thanks for the report. {self._words(10, 40)}."}).encode()
        got = await self.http["reply"].request(
            "POST", f"/api/agent/tickets/{t.ref}/replies",
            {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}, body)
        if got.status != 201:
            raise Failed(f"agent reply answered {got.status}: {got.body[:80]!r}")

    def close(self) -> None:
        for http in self.http.values():
            http.close()


# -- the database, read beside the gateway ---------------------------------------------------

class Counts:
    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine

        self.engine = create_engine(url)

    def rows(self, sql: str) -> list[tuple]:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]

    def queues(self) -> tuple[int, int]:
        """(mail spooled, not processed; mail queued, not delivered)."""
        (pending,), = self.rows("SELECT count(*) FROM inboundmessage WHERE state = 'received'")
        (queued,), = self.rows("SELECT count(*) FROM outboundmessage WHERE state = 'queued'")
        return pending, queued


def sink_ids(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except OSError:
        return []


# -- the run ---------------------------------------------------------------------------------

@dataclass
class Soak:
    gw: Gateway
    load: Load
    counts: Counts
    streams: list[Stream]
    seconds: float
    rss: list[tuple[float, float, float]] = field(default_factory=list)  # (min, serve, worker)
    cpu: dict[str, float] = field(default_factory=dict)  # share of one core during the load

    async def run(self) -> None:
        t0 = time.monotonic() + 0.5
        end = t0 + self.seconds
        print(self._header())
        sampler = asyncio.create_task(self._sample_rss(t0, end))
        reporter = asyncio.create_task(self._report(t0, end))
        before = self._cpu()
        await asyncio.gather(*(s.drive(t0, end) for s in self.streams))
        took = time.monotonic() - t0
        self.cpu = {k: (v - before[k]) / took for k, v in self._cpu().items()}
        await asyncio.gather(sampler, reporter)

    def _cpu(self) -> dict[str, float]:
        return {"serve": cpu_seconds(self.gw.serve.pid),
                "worker": cpu_seconds(self.gw.worker.pid), "bench": time.process_time()}

    async def _sample_rss(self, t0: float, end: float) -> None:
        await asyncio.sleep(max(0.0, t0 - time.monotonic()))
        while (now := time.monotonic()) <= end:
            self.rss.append(((now - t0) / 60, rss_mb(self.gw.serve.pid),
                             rss_mb(self.gw.worker.pid)))
            await asyncio.sleep(RSS_EVERY)

    def _header(self) -> str:
        cols = "".join(f" | {s.name + ' /s':>10} {'p99 ms':>7} {'x1st':>5}" for s in self.streams)
        return (f"{'t s':>5}{cols} | {'errors':>6} {'serve MB':>8} {'worker MB':>9} "
                f"{'backlog':>7} {'outbox':>6} {'sunk':>6}")

    async def _report(self, t0: float, end: float) -> None:
        k = 1
        while (at := t0 + k * WINDOW) <= end + 0.01:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            cells = []
            for s in self.streams:
                lat = s.window(at)
                p99 = pct(lat, 99) * 1000
                if k == 1:
                    s.first_p99 = p99
                ratio = p99 / s.first_p99 if s.first_p99 else 0.0
                cells.append(f" | {len(lat) / WINDOW:10.1f} {p99:7.0f} {ratio:5.1f}")
            pending, queued = await asyncio.to_thread(self.counts.queues)
            sunk = len(await asyncio.to_thread(sink_ids, self.gw.sink_file))
            errors = sum(sum(s.errors.values()) for s in self.streams)
            print(f"{k * WINDOW:5.0f}{''.join(cells)} | {errors:6d} "
                  f"{rss_mb(self.gw.serve.pid):8.1f} {rss_mb(self.gw.worker.pid):9.1f} "
                  f"{pending:7d} {queued:6d} {sunk:6d}", flush=True)
            k += 1

    def drain(self, timeout: float) -> float:
        """Seconds until nothing is spooled or queued (or the timeout)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.counts.queues() == (0, 0):
                break
            time.sleep(1)
        took = time.monotonic() - start
        time.sleep(1)  # the last delivery's line reaches the sink file
        return took

    def summary(self, drained: float) -> None:
        print(f"\ntotals over {self.seconds:.0f} s (baseline of each x1st: that stream's p99 in "
              "the first 10 s window, same run)")
        for s in self.streams:
            lat = [x for _, x in s.done]
            errs = sum(s.errors.values()) + s.unfinished
            print(f"  {s.name:7} {len(lat):7d} ok  {len(lat) / self.seconds:6.1f}/s of "
                  f"{s.rate:g}/s offered  p50 {pct(lat, 50) * 1000:6.1f} ms  "
                  f"p99 {pct(lat, 99) * 1000:7.1f} ms  errors {errs}")
            for why, n in s.errors.most_common(5):
                print(f"          {n:6d} x {why}")
            if s.unfinished:
                print(f"          {s.unfinished:6d} x unfinished {OP_TIMEOUT:.0f} s after the end")
        print("CPU during the load, share of one core: "
              + ", ".join(f"{k} {v:.0%}" for k, v in self.cpu.items()))
        self._rss_summary()
        self._mail_summary(drained)

    def _rss_summary(self) -> None:
        if len(self.rss) < 3:
            return
        minutes = self.rss[-1][0]
        span = min(1.0, minutes / 3)
        print(f"RSS, first {span * 60:.0f} s vs last {span * 60:.0f} s average, and the "
              "least-squares slope over the whole run and after the first span:")
        for i, name in ((1, "serve"), (2, "worker")):
            first = statistics.fmean(r[i] for r in self.rss if r[0] <= span)
            last = statistics.fmean(r[i] for r in self.rss if r[0] >= minutes - span)
            xs, ys = [r[0] for r in self.rss], [r[i] for r in self.rss]
            slope = statistics.linear_regression(xs, ys).slope
            later = [r for r in self.rss if r[0] > span]
            steady = (statistics.linear_regression([r[0] for r in later],
                                                   [r[i] for r in later]).slope
                      if len(later) >= 3 else float("nan"))
            print(f"  {name:7} {first:7.1f} -> {last:7.1f} MB  {last - first:+6.1f} MB "
                  f"({(last - first) / first:+.1%})  slope {slope:+.2f} MB/min, "
                  f"after the first {span * 60:.0f} s {steady:+.2f} MB/min")

    def _mail_summary(self, drained: float) -> None:
        c = self.counts
        (total, processed), = c.rows("SELECT count(*), count(processed_at) FROM inboundmessage "
                                     "WHERE channel = 'smtp'")
        outcomes = dict(c.rows("SELECT outcome, count(*) FROM inboundmessage GROUP BY outcome"))
        states = dict(c.rows("SELECT state, count(*) FROM outboundmessage GROUP BY state"))
        kinds = dict(c.rows("SELECT kind, count(*) FROM outboundmessage GROUP BY kind"))
        sent = {mid for (mid,) in c.rows(
            "SELECT message_id FROM outboundmessage WHERE state = 'sent'")}
        channels = dict(c.rows("SELECT channel, count(*) FROM ticket GROUP BY channel"))
        sunk = sink_ids(self.gw.sink_file)
        at_sink = Counter(sunk)
        everything = states.get("sent", 0) == sum(states.values()) and sent <= set(at_sink)
        print(f"drained in {drained:.1f} s")
        print(f"inbound: {self.load.accepted} mails accepted (250), {total} spooled rows, "
              f"{processed} processed: {'all' if processed == self.load.accepted else 'NOT all'}"
              f" accepted mail processed; outcomes {outcomes}")
        print(f"tickets by channel: {channels}")
        print(f"outbound: {sum(states.values())} queued in all, states {states}; the sink got "
              f"{len(sunk)} mails ({len(at_sink)} distinct, "
              f"{sum(1 for n in at_sink.values() if n > 1)} more than once); "
              f"{len(sent - set(at_sink))} marked sent but not at the sink: "
              f"{'all' if everything else 'NOT all'} delivered")
        print(f"outbound by kind: {kinds}")


EXCEPTION = re.compile(r"[A-Za-z_][\w.]*(Error|Exception|Detected|Exit|Timeout\w*): ")


def scan_logs(paths: dict[str, Path]) -> None:
    """Warnings and errors by kind; the loop brake's refusals are expected here, counted apart."""
    for name, path in paths.items():
        lines = path.read_text(errors="replace").splitlines()
        bad = [x for x in lines if " ERROR " in x or " WARNING " in x or EXCEPTION.match(x)]
        brake = sum("automatic mails in the last hour" in x for x in bad)
        kinds = Counter(re.sub(r"\[[N, ]+\]", "[ids]", re.sub(r"\d{2,}", "N", re.sub(
            r"^\d\S+ \S+ | \[[^]]*\]$", "", x)))[:140]
            for x in bad if "automatic mails in the last hour" not in x)
        print(f"{name} log {path}: {len(lines)} lines, {len(bad)} warnings/errors/exceptions "
              f"({brake} of them the loop brake holding back agents' notifications)")
        for line, n in kinds.most_common(6):
            print(f"  {n:6d} x {line}")


def bench(args: argparse.Namespace) -> None:
    rates = {k: v * args.scale for k, v in RATES.items()}
    seconds = args.minutes * 60
    print(f"soak: {args.minutes:g} min on {args.db}, serve --no-worker + worker, loopback sink "
          f"as relay, {os.cpu_count()} CPUs; offered "
          + ", ".join(f"{k} {v:g}/s" for k, v in rates.items()))
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="workestra-soak-")))
        data = tmp / "data"
        if args.db == "postgres":
            url = stack.enter_context(postgres_schema(args.postgres_url, "soak"))
            engine_url = "postgresql+psycopg://" + url.split("://", 1)[1]
        else:
            url = engine_url = f"sqlite:///{data / 'workestra.db'}"
        logs = Path(tempfile.gettempdir()) / f"workestra-soak-{args.db}-{os.getpid()}"
        gw = stack.enter_context(gateway(data, url, logs))
        load = Load(gw, agent_key(gw))
        counts = Counts(engine_url)
        stack.callback(counts.engine.dispose)
        streams = [Stream("smtp", rates["smtp"], load.smtp),
                   Stream("submit", rates["submit"], load.submit),
                   Stream("track", rates["track"], load.track),
                   Stream("reply", rates["reply"], load.reply)]
        soak = Soak(gw, load, counts, streams, seconds)

        async def go() -> None:
            await load.prepare()
            try:
                await soak.run()
            finally:
                load.close()

        asyncio.run(go())
        drained = soak.drain(args.drain_timeout)
        soak.summary(drained)
        for name, proc in (("serve", gw.serve), ("worker", gw.worker)):
            if proc.poll() is not None:
                print(f"{name} exited during the run with {proc.returncode}")
    scan_logs(gw.logs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--minutes", type=float, default=3.0, help="load time, at most 20")
    p.add_argument("--db", choices=("sqlite", "postgres"), default="postgres")
    p.add_argument("--postgres-url", default=os.environ.get("WORKESTRA_TEST_POSTGRES",
                                                            DEFAULT_PG))
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every offered rate")
    p.add_argument("--drain-timeout", type=float, default=180.0)
    p.add_argument("--sink-port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--sink-file", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.sink_port:
        run_sink(args.sink_port, args.sink_file)
        return
    if not 0 < args.minutes <= 20:
        p.error("--minutes must be more than 0 and at most 20 (the soak is bounded)")
    if args.scale <= 0:
        p.error("--scale must be positive")
    bench(args)


if __name__ == "__main__":
    main()
