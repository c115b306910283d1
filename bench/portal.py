"""Portal speed: the submit page, a submission and the tracking page, against bare Starlette.

    .venv/bin/python bench/portal.py [--seconds 5] [--connections 16] [--rate 300]
                                     [--processes N [--redis-url redis://127.0.0.1:6379]]
                                     [--relay]

Starts `serve --demo` on a fresh data dir (SQLite, submission limit lifted for the run) and a
minimal Starlette hello-world app under uvicorn twice, on httptools (the HTTP parser `serve`
uses: the baseline) and on h11, each in its own process, then drives each
with the same loopback load: N keep-alive HTTP/1.1 connections, one request in flight on each,
for a fixed time (bounded load, not a flood). Then submissions once more, paced: offered at
--rate per second whatever the answers, latency counted from when each was due. Prints
requests/second, p50 and p99 for each, and each figure as a ratio to both bare pages measured
in the same run, and the CPU the server's processes used per request (a submission's
including the delivery of the mail it queued): steadier than a rate on a shared machine.
Nothing is asserted. With --relay the gateway sends its mail to a null aiosmtpd sink (as a
deployment sends to its relay) instead of writing each to a new file in DATA_DIR/sent/.

With one request in flight on each of 16 connections, the mean latency is 16 / throughput
(Little's law): a closed-loop run at 300/s cannot show a p99 under 53 ms, whatever the
server. The paced run asks the question the issue asks: at 300 submissions/s, how long
does each take?
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
from _common import cpu_seconds, free_port, wait_port  # noqa: E402  (bench/_common.py)
from ingest import sink  # noqa: E402  (bench/ingest.py's null aiosmtpd sink)

HELLO = """
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
import uvicorn, sys
async def hello(request):
    return PlainTextResponse("hello")
async def form(request):
    await request.form()
    return PlainTextResponse("ok")
app = Starlette(routes=[Route("/", hello), Route("/form", form, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), http=sys.argv[2], log_level="warning",
            access_log=False)
"""


async def _request(reader, writer, raw: bytes) -> tuple[int, bytes, bytes]:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    m = re.search(rb"(?i)content-length:\s*(\d+)", head)
    body = await reader.readexactly(int(m.group(1))) if m else b""
    return status, head, body


def _raw(method: str, path: str, port: int, cookie: str = "", body: bytes = b"",
         ctype: str = "") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: keep-alive"]
    if cookie:
        lines.append(f"Cookie: {cookie}")
    if body or method == "POST":
        lines += [f"Content-Type: {ctype}", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def load(ports: list[int], raws: list[bytes], seconds: float, connections: int
               ) -> dict:
    """Closed-loop load: each connection sends the next request as soon as its last is
    answered. `raws` are sent in turn (one customer after another). Given several ports,
    connections are spread over them, as a load balancer would."""
    opened = itertools.count()
    turn = itertools.count()
    latencies: list[float] = []
    errors = 0
    end = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", ports[next(opened) % len(ports)])
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            status, _, _ = await _request(reader, writer, raws[next(turn) % len(raws)])
            latencies.append(time.perf_counter() - t0)
            errors += status >= 400
        writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(connections)))
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {"rps": len(latencies) / elapsed, "errors": errors, "count": len(latencies),
            "p50": latencies[len(latencies) // 2] * 1000,
            "p99": latencies[int(len(latencies) * 0.99)] * 1000}


async def paced(ports: list[int], raws: list[bytes], seconds: float, connections: int,
                rate: float) -> dict:
    """Open-loop load: requests are due at a fixed rate whether or not earlier ones are done,
    each sent on the first free connection. A request's latency counts from when it was due,
    so time spent queued behind a slow server counts too (no coordinated omission)."""
    turn, opened = itertools.count(), itertools.count()
    due: asyncio.Queue[float | None] = asyncio.Queue()
    latencies: list[float] = []
    errors = 0

    async def schedule() -> None:
        start = time.perf_counter()
        for n in range(int(seconds * rate)):
            await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
            due.put_nowait(start + n / rate)
        for _ in range(connections):
            due.put_nowait(None)

    async def one() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", ports[next(opened) % len(ports)])
        while (t := await due.get()) is not None:
            status, _, _ = await _request(reader, writer, raws[next(turn) % len(raws)])
            latencies.append(time.perf_counter() - t)
            errors += status >= 400
        writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(schedule(), *(one() for _ in range(connections)))
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {"rps": len(latencies) / elapsed, "errors": errors, "count": len(latencies),
            "p50": latencies[len(latencies) // 2] * 1000,
            "p99": latencies[int(len(latencies) * 0.99)] * 1000}


async def prepare(port: int, customers: int = 5000) -> tuple[bytes, list[bytes], bytes]:
    """(submit page GET, submission POSTs, tracking page GET) with the cookies a browser would
    send back by then: the tracking page gets its ticket cookie and the CSRF cookie. Each
    submission comes from another customer, so each gets its confirmation mail (one address
    would soon meet the hourly cap on automatic mail, and cost less than real traffic)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    _, head, body = await _request(reader, writer, _raw("GET", "/portal/acme/submit", port))
    csrf_cookie = re.search(rb"wk_csrf=([^;]+)", head).group(1).decode()
    token = re.search(rb'name="csrf_token" value="([^"]+)"', body).group(1).decode()
    posts = [_raw("POST", "/portal/acme/submit", port, f"wk_csrf={csrf_cookie}", urlencode({
        "csrf_token": token, "name": f"Customer {i}", "email": f"customer{i}@example.test",
        "subject": "Printer on fire", "description": "Room 4, since this morning.",
        "type": "Bug Report"}).encode(), "application/x-www-form-urlencoded")
        for i in range(customers)]
    _, _, page = await _request(reader, writer, posts[-1])
    link = re.search(rb'href="http://[^/]+(/portal/acme/tickets/[^"]+)"', page).group(1)
    _, head, _ = await _request(reader, writer, _raw("GET", link.decode().replace("&amp;", "&"),
                                                      port))
    session = re.search(rb"wk_ticket=([^;]+)", head).group(1).decode()
    path = link.decode().split("?")[0]
    writer.close()
    return (_raw("GET", "/portal/acme/submit", port, f"wk_csrf={csrf_cookie}"), posts,
            _raw("GET", path, port, f"wk_ticket={session}; wk_csrf={csrf_cookie}"))


def outbox_drained(database: Path, timeout: float = 300) -> float:
    """Seconds until no mail waits in the outbox: the paced run then starts from a quiet
    server, not behind the confirmations of the run before it."""
    import sqlite3

    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        with contextlib.closing(sqlite3.connect(database, timeout=30)) as conn:
            if not conn.execute("SELECT count(*) FROM outboundmessage WHERE state = 'queued'"
                                ).fetchone()[0]:
                break
        time.sleep(0.2)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rate", type=float, default=300,
                    help="submissions/s offered in the paced run (the issue's aim)")
    ap.add_argument("--processes", type=int, default=1,
                    help="with N > 1: N `serve --no-worker` processes and one `worker` on the "
                         "same SQLite file, rate limits shared in Redis, connections spread "
                         "over them as by a load balancer (and N processes of each bare page)")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    ap.add_argument("--relay", action="store_true",
                    help="deliver the gateway's mail to a null SMTP sink, not to files")
    args = ap.parse_args()
    n = args.processes
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        hello_ports, h11_ports = [free_port() for _ in range(n)], [free_port() for _ in range(n)]
        http_ports, smtp_ports = [free_port() for _ in range(n)], [free_port() for _ in range(n)]
        # The baseline runs on the HTTP parser `serve` uses (httptools); the same page on
        # uvicorn's pure-Python h11 is printed too: the orientation figure (about
        # 11,000 req/s) is of that stack, which serves a third of what httptools does.
        servers: dict[str, list[int]] = {"hello": [], "h11": [], "gateway": []}  # their pids
        for hello, h11 in zip(hello_ports, h11_ports, strict=True):
            procs.append(subprocess.Popen([sys.executable, "-c", HELLO, str(hello), "httptools"]))
            servers["hello"].append(procs[-1].pid)
            procs.append(subprocess.Popen([sys.executable, "-c", HELLO, str(h11), "h11"]))
            servers["h11"].append(procs[-1].pid)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WORKESTRA_")}
        env.update(WORKESTRA_DATA_DIR=f"{tmp}/data", WORKESTRA_LIMIT_SUBMIT="1000000/hour",
                   WORKESTRA_PUBLIC_URL=f"http://127.0.0.1:{http_ports[0]}")
        if n > 1:  # one count for every process, as the README asks of such a deployment
            env.update(WORKESTRA_REDIS_URL=args.redis_url,
                       WORKESTRA_REDIS_PREFIX=f"bench-{os.getpid()}-{time.time_ns()}")
        env.pop("DATABASE_URL", None)
        if args.relay:
            relay = stack.enter_context(sink("null", Path(tmp)))
            env["WORKESTRA_SMTP_RELAY"] = f"127.0.0.1:{relay}"

        def serve(i: int) -> subprocess.Popen:
            return gateway(
                [sys.executable, "-m", "gateway", "serve", "--demo",
                 "--smtp-port", str(smtp_ports[i]), "--http-port", str(http_ports[i]),
                 *(["--no-worker"] if n > 1 else [])])

        def gateway(argv: list[str]) -> subprocess.Popen:
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            servers["gateway"].append(proc.pid)
            return proc

        try:
            procs.append(serve(0))
            wait_port(http_ports[0], procs[-1])  # the first one makes the schema and secret
            for i in range(1, n):
                procs.append(serve(i))
            if n > 1:
                procs.append(gateway([sys.executable, "-m", "gateway", "worker"]))
            for port in [*hello_ports, *h11_ports, *http_ports]:
                wait_port(port)
            form = _raw("POST", "/form", hello_ports[0], body=b"a=1&b=2",
                        ctype="application/x-www-form-urlencoded")
            submit_get, submit_posts, tracking = asyncio.run(prepare(http_ports[0]))
            # Submissions last: each queues mail that the outbox goes on delivering after
            # the run, which would weigh on whatever ran next.
            runs = [("bare page", "hello", hello_ports, [_raw("GET", "/", hello_ports[0])]),
                    ("bare page, h11", "h11", h11_ports, [_raw("GET", "/", h11_ports[0])]),
                    ("bare form POST", "hello", hello_ports, [form]),
                    ("submit page", "gateway", http_ports, [submit_get]),
                    ("tracking page", "gateway", http_ports, [tracking]),
                    ("submission", "gateway", http_ports, submit_posts)]
            results = {}
            database = Path(tmp) / "data" / "workestra.db"
            for name, server, ports, raw in runs:
                before = cpu_seconds(servers[server])
                results[name] = r = asyncio.run(load(ports, raw, args.seconds, args.connections))
                if name == "submission":  # with the delivery of the mail it queued
                    drained = outbox_drained(database)
                r["cpu_ms"] = (cpu_seconds(servers[server]) - before) / r["count"] * 1000
            before = cpu_seconds(servers["gateway"])
            results[f"submission, {args.rate:g}/s offered"] = r = asyncio.run(paced(
                http_ports, submit_posts, args.seconds, args.connections, args.rate))
            outbox_drained(database)
            r["cpu_ms"] = (cpu_seconds(servers["gateway"]) - before) / r["count"] * 1000
        finally:
            for p in procs:
                p.terminate()
                p.wait()
    print(f"(the outbox took {drained:.1f} s to deliver the closed-loop run's confirmations "
          "before the paced run began)")
    base, h11 = results["bare page"]["rps"], results["bare page, h11"]["rps"]
    print(f"{args.connections} connections, {args.seconds:g} s each, loopback, {n} process(es) "
          "of each server; the bare page on httptools (as serve) is the baseline, on h11 the "
          "issue's orientation figure; mail "
          + ("to a null SMTP relay" if args.relay else "written to DATA_DIR/sent/"))
    for name, r in results.items():
        print(f"{name:26} {r['rps']:6.0f} req/s  p50 {r['p50']:6.2f} ms  p99 {r['p99']:6.2f} ms"
              f"  {r['rps'] / base:6.1%} of bare page ({r['rps'] / h11:6.1%} of h11's)"
              f"  server CPU {r['cpu_ms']:.3f} ms each  errors {r['errors']}")


if __name__ == "__main__":
    main()
