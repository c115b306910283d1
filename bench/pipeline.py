"""The inbound pipeline alone: what each message costs once it is spooled, without SMTP.

    .venv/bin/python bench/pipeline.py [--db sqlite|postgres] [--count 1000] [--batch 50]
                                       [--postgres-url postgresql://postgres@127.0.0.1:5432/test]
                                       [--instructions]

Spools `bench/ingest.py`'s mixed mail into a fresh `serve --demo` store (SQLite in a temporary
data dir, or a throwaway PostgreSQL schema), then runs `Pipeline.process_batch` over it in
batches, in this process. Prints per message: SQL statements, CPU and wall time, and the CPU
as a ratio to a baseline measured in the same run: the standard library reading the same
bytes (`email.message_from_bytes` with the default policy, and the text body), the least any
mail handler does. The outbox is not running: its delivery is not part of this figure.
With --instructions it runs itself under callgrind and counts instructions instead (after 100
messages to warm up; steady to about 1% where CPU time on a shared machine swings by a third),
for the same two: the standard library's reading and the pipeline.
"""

from __future__ import annotations

import argparse
import contextlib
import email
import email.policy
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import event

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _common import postgres_schema  # noqa: E402  (bench/_common.py)
from ingest import DEFAULT_PG, RCPT, make_mails  # noqa: E402

from gateway.config import load_settings  # noqa: E402
from gateway.demo import seed_demo  # noqa: E402
from gateway.heap import freeze_start_up  # noqa: E402
from gateway.inbound.spool import Spool  # noqa: E402
from gateway.services import build_services  # noqa: E402
from storage import bare  # noqa: E402

_UNDER_CALLGRIND = "WORKESTRA_BENCH_UNDER_CALLGRIND"
WARM_UP = 100  # messages processed before counting starts, under --instructions


def baseline(mails: list[tuple[str, bytes]]) -> float:
    """CPU seconds per message for the standard library to read each mail and its text."""
    started = time.process_time()
    for _, raw in mails:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        body = msg.get_body(("plain", "html"))
        if body is not None:
            body.get_content()
    return (time.process_time() - started) / len(mails)


def run(database_url: str | None, mails: list[tuple[str, bytes]], batch: int,
        warm: int = 0) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as data:
        env = {"WORKESTRA_DATA_DIR": data, "WORKESTRA_SECRET_KEY": "bench-secret-key-0123456789"}
        if database_url:
            env["DATABASE_URL"] = database_url
        services = build_services(load_settings(env=env))
        try:
            seed_demo(services.store)
            spool = Spool(services.store, services.blobs)
            futures = [spool.submit(raw, mail_from=sender, rcpt_tos=[RCPT])
                       for sender, raw in mails]
            ids = [f.result() for f in futures]
            spool.close()
            freeze_start_up()  # as serve and worker do once started
            statements = [0]
            counting = os.environ.get(_UNDER_CALLGRIND) is None
            if counting:  # not under callgrind: the listener's own cost would be counted
                @event.listens_for(services.engine, "before_cursor_execute")
                def _count(*_args) -> None:
                    statements[0] += 1
            else:  # warmed up on the first batches (caches, lazy imports), then counted
                for i in range(0, warm, batch):
                    services.pipeline.process_batch(ids[i:i + batch])
                ids = ids[warm:]
                _callgrind("-z")
                baseline(mails[warm:])  # dump 1: the standard library on the same mail
                _callgrind("-d")
                _callgrind("-z")
            on_bare = bare.executed  # the store's hottest statements skip the engine's events
            cpu, wall = time.process_time(), time.perf_counter()
            for i in range(0, len(ids), batch):
                services.pipeline.process_batch(ids[i:i + batch])
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            statements[0] += bare.executed - on_bare
            if not counting:
                _callgrind("-d")
        finally:
            services.close()
    n = len(ids)
    return {"statements": statements[0] / n, "cpu": cpu / n, "wall": wall / n}


def _callgrind(flag: str) -> None:
    """Zero (-z) or dump (-d) this process's counters from inside it."""
    subprocess.run(["callgrind_control", flag, str(os.getpid())], check=True,
                   stdout=subprocess.DEVNULL)


def instructions(args: argparse.Namespace) -> None:
    """This script again under callgrind: instructions a message, steady where CPU time on a
    shared machine swings by a third between runs. PYTHONHASHSEED=0, the same mail."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {**os.environ, _UNDER_CALLGRIND: "1", "PYTHONHASHSEED": "0"}
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        sys.executable, __file__, "--count", str(args.count + WARM_UP),
                        "--batch", str(args.batch), "--db", args.db,
                        "--postgres-url", args.postgres_url],
                       env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        totals: dict[int, int] = {}  # dump number -> instructions (all threads)
        for dump in Path(tmp).glob("callgrind.out.*"):
            number = re.search(r"\.(\d+)(?:-\d+)?$", dump.name)
            found = re.search(r"^(?:summary|totals): (\d+)", dump.read_text(), re.MULTILINE)
            if number and found:
                key = int(number.group(1))
                totals[key] = totals.get(key, 0) + int(found.group(1))
    base, pipeline = totals.get(1, 0) / args.count, totals.get(2, 0) / args.count
    print(f"{args.count} mails after {WARM_UP} to warm up, batches of {args.batch}, database "
          f"{args.db}, under callgrind")
    print(f"baseline, the standard library reading each mail: {base / 1e6:.2f}M instructions")
    print(f"pipeline: {pipeline / 1e6:.2f}M instructions a message "
          f"(= {pipeline / base:.1f} x baseline)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--postgres-url", default=DEFAULT_PG)
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions under callgrind instead of timing")
    args = parser.parse_args()
    if args.instructions:
        instructions(args)
        return
    logging.disable(logging.WARNING)  # the hourly cap on agents' mail says so, many times
    mails = make_mails(args.count)
    counted = os.environ.get(_UNDER_CALLGRIND) is not None
    base = 1.0 if counted else baseline(mails)
    with (postgres_schema(args.postgres_url, "benchpipe") if args.db == "postgres"
          else contextlib.nullcontext(None)) as url:
        got = run(url, mails, args.batch, warm=WARM_UP if counted else 0)
    print(f"{args.count} mails, batches of {args.batch}, database {args.db}")
    print(f"baseline, the standard library reading each mail: {base * 1000:.3f} ms CPU")
    print(f"pipeline: {got['statements']:.2f} SQL statements, {got['cpu'] * 1000:.2f} ms CPU "
          f"(= {got['cpu'] / base:.1f} x baseline), {got['wall'] * 1000:.2f} ms wall a message")


if __name__ == "__main__":
    main()
