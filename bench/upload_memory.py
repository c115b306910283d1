"""Memory of the portal while 3 clients upload 10 MiB at once, and how early 30 MB is refused.

Why: the upload limit is meant to be enforced while the body streams in, not after it has
been buffered, so a few large uploads at once must not cost the process many times their size,
and an oversized one must be turned away long before it has been sent.

    .venv/bin/python bench/upload_memory.py [--rounds 3] [--clients 3] [--mbps 0]

Starts `serve --demo` on a fresh data dir (SQLite; the upload limit of 5 per 10 minutes per IP
is lifted for the run, since every client here is 127.0.0.1 and X-Forwarded-For is believed
only from WORKESTRA_TRUSTED_PROXIES), samples its VmRSS from /proc/PID/status every 20 ms,
and runs each phase `--rounds` times with `--clients` concurrent raw HTTP/1.1 connections to
`POST /api/public/upload` (multipart: `slug`, `file`):

- refused, Content-Length: 30 MB each, declared up front; must get 413;
- refused, chunked: 30 MB each with no declared length, so only the streaming count can
  stop it; must get 413;
- accepted: a 10 MiB PNG each (the largest accepted); all must get 201. Last in each round,
  since Python keeps the RSS an accepted upload grew and would hide the refusals' growth.

Prints the baseline RSS, each phase's peak RSS growth over the RSS just before it (in MB and
as a ratio to the bytes in flight, clients x 10 MiB), the time to the answer, and how much of
the body had been sent when the answer came. RSS that Python keeps after the first round
shows in the later rounds' smaller growth, so the first round and the highest peak over the
baseline are the figures to read. `--mbps` paces each client like a real link (loopback
moves 10 MiB in tens of ms, so early refusal shows best in bytes not sent). Nothing is
asserted.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from _common import free_port, wait_port  # noqa: E402  (bench/_common.py)

MiB = 1024 * 1024
CHUNK = 64 * 1024
BOUNDARY = b"----workestra-bench-7d1f"


def png(size: int, seed: int) -> bytes:
    """A PNG signature and IHDR, then one IDAT of incompressible bytes up to `size`."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")
    head = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", (1024).to_bytes(4, "big") * 2 + b"\x08\x02\0\0\0")
    tail = chunk(b"IEND", b"")
    fill = size - len(head) - len(tail) - 12
    return head + chunk(b"IDAT", random.Random(seed).randbytes(fill)) + tail


def multipart(filename: str, data: bytes) -> bytes:
    b = b"--" + BOUNDARY
    return (b + b'\r\nContent-Disposition: form-data; name="slug"\r\n\r\nacme\r\n' + b
            + b'\r\nContent-Disposition: form-data; name="file"; filename="' + filename.encode()
            + b'"\r\nContent-Type: image/png\r\n\r\n' + data + b"\r\n" + b + b"--\r\n")


class RssSampler(threading.Thread):
    """VmRSS of one process every 20 ms, as (monotonic time, bytes)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.path = f"/proc/{pid}/status"
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def read(self) -> int:
        with open(self.path) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.monotonic(), self.read()))
            time.sleep(0.02)

    def peak(self, t0: float, t1: float) -> int:
        return max(rss for t, rss in self.samples if t0 <= t <= t1)

    def settled(self, seconds: float = 0.5) -> int:
        """The median RSS over the last `seconds`, after waiting that long."""
        time.sleep(seconds)
        now = time.monotonic()
        return int(statistics.median(rss for t, rss in self.samples if t >= now - seconds))


@dataclass
class Result:
    status: int
    seconds: float  # from the first byte sent to the response's status line
    sent: int  # body bytes written by then
    total: int


def post(port: int, body: bytes, chunked: bool, mbps: float = 0) -> Result:
    """One upload on its own connection. A second thread sends the body while this one waits
    for the answer, so an early refusal is seen when it is sent, and the bytes the server had
    already answered are read even when its close resets the connection under the sender."""
    sock = socket.create_connection(("127.0.0.1", port))
    head = [b"POST /api/public/upload HTTP/1.1", b"Host: 127.0.0.1:%d" % port,
            b"Content-Type: multipart/form-data; boundary=" + BOUNDARY, b"Connection: close"]
    head.append(b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % len(body))
    sent = 0
    answered = threading.Event()

    def send() -> None:
        nonlocal sent
        try:
            sock.sendall(b"\r\n".join(head) + b"\r\n\r\n")
            for i in range(0, len(body), CHUNK):
                if answered.is_set():
                    return
                piece = body[i:i + CHUNK]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
                if mbps:  # a client on a real link, not loopback
                    time.sleep(max(0.0, t0 + sent / (mbps * 1e6) - time.perf_counter()))
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:  # reset by the server's close after its answer
            pass

    t0 = time.perf_counter()
    sender = threading.Thread(target=send)
    sender.start()
    status, elapsed = 0, 0.0
    try:
        first = sock.recv(65536)
        elapsed = time.perf_counter() - t0
        answered.set()
        status = int(first.split(b" ", 2)[1]) if first.startswith(b"HTTP/1.1 ") else 0
    except OSError:
        elapsed = time.perf_counter() - t0
    finally:
        answered.set()
        sender.join()
        sock.close()
    return Result(status, elapsed, sent, len(body))


def phase(port: int, bodies: list[bytes], chunked: bool, mbps: float = 0) -> list[Result]:
    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(lambda b: post(port, b, chunked, mbps), bodies))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--mbps", type=float, default=0,
                    help="each client's sending rate in MB/s (0: as fast as loopback goes)")
    args = ap.parse_args()
    ok_bodies = [multipart(f"shot{i}.png", png(10 * MiB, i)) for i in range(args.clients)]
    big_bodies = [multipart(f"huge{i}.png", png(30_000_000, 100 + i)) for i in range(args.clients)]
    warm = multipart("warm.png", png(200_000, 99))
    in_flight = args.clients * 10 * MiB
    phases = [("30 MB, Content-Length", big_bodies, False, 413),  # refusals first: Python
              ("30 MB, chunked", big_bodies, True, 413),  # keeps the RSS an accepted one grew
              ("10 MiB each, accepted", ok_bodies, False, 201)]
    rows: dict[str, list[tuple[int, int, list[Result]]]] = {name: [] for name, *_ in phases}
    with tempfile.TemporaryDirectory() as tmp:
        http_port, smtp_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("WORKESTRA_")}
        env.update(WORKESTRA_DATA_DIR=f"{tmp}/data", WORKESTRA_LIMIT_UPLOAD="1000000/minute",
                   WORKESTRA_PUBLIC_URL=f"http://127.0.0.1:{http_port}")
        env.pop("DATABASE_URL", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--demo", "--smtp-port", str(smtp_port),
             "--http-port", str(http_port)], cwd=ROOT, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sampler = RssSampler(proc.pid)
        try:
            wait_port(http_port)
            sampler.start()
            phase(http_port, [warm], False)  # first-use imports and caches
            baseline = sampler.settled(1.0)
            for _ in range(args.rounds):
                for name, bodies, chunked, expected in phases:
                    before = sampler.settled()
                    t0 = time.monotonic()
                    results = phase(http_port, bodies, chunked, args.mbps)
                    time.sleep(0.1)  # the last samples of the phase
                    peak = sampler.peak(t0, time.monotonic())
                    bad = [r.status for r in results if r.status != expected]
                    if bad:
                        raise SystemExit(f"{name}: expected {expected}, got {bad}")
                    rows[name].append((peak - before, peak - baseline, results))
            final = sampler.settled()
        finally:
            sampler.stop.set()
            proc.terminate()
            proc.wait()
    rate = f"{args.mbps:g} MB/s per client" if args.mbps else "unthrottled"
    print(f"{args.clients} concurrent clients, {args.rounds} rounds, POST /api/public/upload, "
          f"loopback ({rate}), SQLite")
    print(f"baseline RSS after warm-up {baseline / MiB:.1f} MiB; at the end {final / MiB:.1f} MiB")
    print(f"bytes in flight: {args.clients} x 10 MiB = {in_flight / MiB:.0f} MiB")
    ok_time = statistics.median(r.seconds for *_, rs in rows[phases[2][0]] for r in rs)
    for name, *_ in phases:
        growths = [g for g, _, _ in rows[name]]
        results = [r for *_, rs in rows[name] for r in rs]
        secs = statistics.median(r.seconds for r in results)
        sent = statistics.median(r.sent / r.total for r in results)
        print(f"{name}:\n  peak RSS growth over the RSS just before, by round: "
              + ", ".join(f"{g / MiB:.1f}" for g in growths)
              + f" MiB (first round: {growths[0] / in_flight:.2f}x the bytes in flight)\n"
              f"  answer after {secs * 1000:.1f} ms median ({secs / ok_time:.3f}x the 10 MiB "
              f"upload), {sent:.0%} of the body handed to the socket by then")
    over = max(o for name in rows for _, o, _ in rows[name])
    print(f"highest RSS over the baseline, whole run: {over / MiB:.1f} MiB "
          f"({over / in_flight:.2f}x in flight)")

if __name__ == "__main__":
    main()
