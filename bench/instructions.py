"""Instructions per request, counted by callgrind: steady where timings swing by 2x.

    .venv/bin/python bench/instructions.py tracking|submission [--requests 1000]

Starts `serve --demo` under `valgrind --tool=callgrind` (PYTHONHASHSEED=0), sends 100
requests to warm it up, zeroes the counters, sends N more one after another on one
connection, dumps, and prints the whole process's instructions divided by N (uvicorn,
Starlette, the outbox's delivery of a submission's mail included). Run it on two versions
(a git worktree of the older one) to judge a change; the count repeats to within about 1%.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from _common import free_port, wait_port  # noqa: E402  (bench/_common.py)

from portal import _request, prepare  # noqa: E402  (bench/portal.py, first on the path)

WARM_UP = 100


async def _send(port: int, raws: list[bytes]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for raw in raws:
        await _request(reader, writer, raw)
    writer.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("tracking", "submission"))
    ap.add_argument("--requests", type=int, default=1000)
    args = ap.parse_args()
    n = args.requests
    with tempfile.TemporaryDirectory() as tmp:
        http, smtp = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("WORKESTRA_")}
        env.update(WORKESTRA_DATA_DIR=f"{tmp}/data", WORKESTRA_LIMIT_SUBMIT="1000000/hour",
                   WORKESTRA_PUBLIC_URL=f"http://127.0.0.1:{http}", PYTHONHASHSEED="0")
        env.pop("DATABASE_URL", None)
        out = Path(tmp) / "callgrind.out"
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
             "-m", "gateway", "serve", "--demo", "--smtp-port", str(smtp), "--http-port",
             str(http)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        try:
            wait_port(http, proc, timeout=600)
            _, posts, tracking = asyncio.run(prepare(http, customers=n + WARM_UP))
            raws = posts if args.what == "submission" else [tracking] * (n + WARM_UP)
            settle = 5.0 if args.what == "submission" else 0.5  # the outbox sends meanwhile
            asyncio.run(_send(http, raws[:WARM_UP]))
            time.sleep(settle)
            subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True,
                           stdout=subprocess.DEVNULL)
            asyncio.run(_send(http, raws[WARM_UP:WARM_UP + n]))
            time.sleep(settle)
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True,
                           stdout=subprocess.DEVNULL)
            total = 0
            for dump in Path(tmp).glob("callgrind.out.*"):  # one per thread group dumped
                m = re.search(r"^(?:summary|totals): (\d+)", dump.read_text(), re.MULTILINE)
                total += int(m.group(1)) if m else 0
        finally:
            proc.terminate()
            proc.wait()
    print(f"{args.what}: {total / n / 1000:,.0f}k instructions a request, over {n}")


if __name__ == "__main__":
    main()
