"""The `workestra` command: serve, inspect, migrate, and the keys, inboxes and mail tools."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys

from gateway import logs
from gateway.config import SettingError, Settings, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(data_dir=getattr(args, "data_dir", None),
                         host=getattr(args, "host", None),
                         smtp_port=getattr(args, "smtp_port", None),
                         http_port=getattr(args, "http_port", None))


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.serve import ServeError, serve

    settings = _settings(args)
    try:
        asyncio.run(serve(settings, demo=args.demo, worker=not args.no_worker))
    except ServeError as e:
        print(f"workestra: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from gateway.worker import WorkerError, work

    settings = _settings(args)
    if args.alive:
        from gateway.worker import alive

        why = alive(settings)
        if why is not None:
            print(f"workestra: {why}", file=sys.stderr)
            return 1
        return 0
    if not os.environ.get("WORKESTRA_PUBLIC_URL"):
        # A worker alone cannot know where `serve` answers: its mail's links would guess.
        logging.getLogger("workestra.worker").warning(
            "WORKESTRA_PUBLIC_URL is not set: links in mail will point to %s; set it to the "
            "address customers reach the portal at", settings.public_url)
    try:
        asyncio.run(work(settings))
    except WorkerError as e:
        print(f"workestra: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from gateway.inspect import inspect_files

    results = inspect_files(args.files, _settings(args), args.mail_from)
    for result in results:
        print(json.dumps(result, ensure_ascii=False))
    return 1 if any("error" in r for r in results) else 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from storage.engine import make_engine
    from storage.migrate import upgrade

    settings = _settings(args)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    print("database is at the newest schema")
    return 0


def _sweep_hours(value: str) -> float:
    """At least an hour: a younger file may be a write whose row is about to commit."""
    hours = float(value)
    if not hours >= 1:
        raise argparse.ArgumentTypeError(f"expected at least 1 hour, got {value}")
    return hours


def cmd_blobs_sweep(args: argparse.Namespace) -> int:
    from datetime import timedelta

    import sqlalchemy.exc

    from storage.blob_sweep import WrongDatabase, sweep
    from storage.blobs import BlobStore
    from storage.engine import make_engine
    from storage.store import Store

    settings = _settings(args)
    # Not migrated here: a database without the tables is the wrong one, and once made it
    # would call every blob unreferenced.
    engine = make_engine(settings.database_url)
    try:
        result = sweep(Store(engine), BlobStore(settings.blob_dir),
                       older_than=timedelta(hours=args.older_than), dry_run=args.dry_run)
    except sqlalchemy.exc.DBAPIError as e:
        print(f"workestra: blobs sweep stopped, cannot read which files are referenced "
              f"(is this the right DATABASE_URL, migrated?): {e.orig or e}", file=sys.stderr)
        return 1
    except WrongDatabase as e:
        print(f"workestra: blobs sweep stopped: {e}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(result.summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workestra", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run SMTP, the portal and the workers in one process")
    serve.add_argument("--demo", action="store_true", help="seed the demo workspace 'acme'")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--smtp-port", type=int, help="SMTP port (default 2525)")
    serve.add_argument("--http-port", type=int, help="HTTP port (default 8000)")
    serve.add_argument("--data-dir", help="data directory (default ./data)")
    serve.add_argument("--no-worker", action="store_true",
                       help="SMTP and HTTP only; run `workestra worker` for the rest")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run the background work alone: inbound mail, "
                            "the outbox, IMAP inboxes")
    worker.add_argument("--data-dir", help="data directory (default ./data)")
    worker.add_argument("--alive", action="store_true",
                        help="exit 0 if this host's worker answered in the last minute, else "
                             "1 (a health check: it starts nothing)")
    worker.set_defaults(func=cmd_worker)

    inspect = sub.add_parser("inspect", help="show what the pipeline would decide for .eml files")
    inspect.add_argument("files", nargs="+", metavar="FILE.eml")
    inspect.add_argument("--data-dir", help="data directory whose tickets threading looks at")
    inspect.add_argument("--mail-from", metavar="ADDRESS",
                         help="the SMTP envelope sender to judge the files by (default: "
                              "their Return-Path, else their From)")
    inspect.set_defaults(func=cmd_inspect)

    migrate = sub.add_parser("migrate", help="bring the database to the newest schema")
    migrate.add_argument("--data-dir")
    migrate.set_defaults(func=cmd_migrate)

    blobs = sub.add_parser("blobs", help="the stored files of mail and attachments")
    blobs_sub = blobs.add_subparsers(dest="blobs_command", required=True)
    p = blobs_sub.add_parser("sweep", help="delete files no ticket or message refers to "
                             "(the worker does this every 6 hours)")
    p.add_argument("--older-than", type=_sweep_hours, default=48, metavar="HOURS",
                   help="only files not written or reused for this long (default 48; under "
                        "24, files kept for a form sent back with an error go too)")
    p.add_argument("--dry-run", action="store_true", help="report, delete nothing")
    p.add_argument("--data-dir")
    p.set_defaults(func=cmd_blobs_sweep)

    from gateway import accounts_cli, dkim_cli
    from gateway.inbound import imap_cli
    from gateway.outbound import preview

    accounts_cli.register(sub)
    dkim_cli.register(sub)
    imap_cli.register(sub)
    preview.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    fmt = os.environ.get("WORKESTRA_LOG_FORMAT", "text")
    if fmt not in logs.FORMATS:
        print(f"workestra: WORKESTRA_LOG_FORMAT: expected text or json, got {fmt!r}",
              file=sys.stderr)
        return 2
    logs.setup(fmt)
    try:
        return args.func(args)
    except SettingError as e:
        print(f"workestra: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `workestra ... | head`: the reader has all it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush is quiet
        return 141
