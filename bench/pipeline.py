"""The inbound pipeline alone: what each message costs once it is spooled, without SMTP.

    .venv/bin/python bench/pipeline.py [--db sqlite|postgres] [--count 1000] [--batch 50]
                                       [--postgres-url postgresql://postgres@127.0.0.1:5432/test]

Spools `bench/ingest.py`'s mixed mail into a fresh `serve --demo` store (SQLite in a temporary
data dir, or a throwaway PostgreSQL schema), then runs `Pipeline.process_batch` over it in
batches, in this process. Prints per message: SQL statements, CPU and wall time, and the CPU
as a ratio to a baseline measured in the same run: the standard library reading the same
bytes (`email.message_from_bytes` with the default policy, and the text body), the least any
mail handler does. The outbox is not running: its delivery is not part of this figure.
"""

from __future__ import annotations

import argparse
import contextlib
import email
import email.policy
import logging
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
from gateway.inbound.spool import Spool  # noqa: E402
from gateway.services import build_services  # noqa: E402


def baseline(mails: list[tuple[str, bytes]]) -> float:
    """CPU seconds per message for the standard library to read each mail and its text."""
    started = time.process_time()
    for _, raw in mails:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        body = msg.get_body(("plain", "html"))
        if body is not None:
            body.get_content()
    return (time.process_time() - started) / len(mails)


def run(database_url: str | None, mails: list[tuple[str, bytes]], batch: int) -> dict[str, float]:
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
            statements = [0]

            @event.listens_for(services.engine, "before_cursor_execute")
            def _count(*_args) -> None:
                statements[0] += 1

            cpu, wall = time.process_time(), time.perf_counter()
            for i in range(0, len(ids), batch):
                services.pipeline.process_batch(ids[i:i + batch])
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        finally:
            services.close()
    n = len(mails)
    return {"statements": statements[0] / n, "cpu": cpu / n, "wall": wall / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--postgres-url", default=DEFAULT_PG)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the hourly cap on agents' mail says so, many times
    mails = make_mails(args.count)
    base = baseline(mails)
    with (postgres_schema(args.postgres_url, "benchpipe") if args.db == "postgres"
          else contextlib.nullcontext(None)) as url:
        got = run(url, mails, args.batch)
    print(f"{args.count} mails, batches of {args.batch}, database {args.db}")
    print(f"baseline, the standard library reading each mail: {base * 1000:.3f} ms CPU")
    print(f"pipeline: {got['statements']:.2f} SQL statements, {got['cpu'] * 1000:.2f} ms CPU "
          f"(= {got['cpu'] / base:.1f} x baseline), {got['wall'] * 1000:.2f} ms wall a message")


if __name__ == "__main__":
    main()
