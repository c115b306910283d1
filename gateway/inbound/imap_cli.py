"""`workestra inboxes add|list|disable|enable`: the IMAP support inboxes `serve` reads."""

from __future__ import annotations

import argparse
import os
import sys

from storage import inboxes
from storage.models import ImapInbox

DEFAULT_PORTS = {"tls": 993, "starttls": 143, "none": 143}


def describe_inbox(row: ImapInbox, slug: str) -> str:
    """One line: where the inbox is, what happens to read mail, and how it is doing."""
    then = f"moved to {row.done_folder}" if row.done_folder else "flagged \\Seen"
    state = "enabled" if row.enabled else "disabled"
    line = (f"inbox {row.id} for {slug}: {row.username} on {row.host}:{row.port} "
            f"({row.security}), folder {row.folder}, then {then}; {state}, read up to UID "
            f"{row.last_uid}")
    return line + (f"; last error: {row.last_error}" if row.last_error else "")


def _services(args: argparse.Namespace):
    from gateway.cli import _settings
    from gateway.services import build_services

    return build_services(_settings(args))


def cmd_add(args: argparse.Namespace) -> int:
    if args.password_env:
        password = os.environ.get(args.password_env)
        if not password:
            print(f"workestra: --password-env: {args.password_env} is not set", file=sys.stderr)
            return 2
    else:
        password = args.password
    port = args.port or DEFAULT_PORTS[args.security]
    services = _services(args)
    try:
        ws = services.store.workspace_by_slug(args.slug)
        if ws is None:
            print(f"workestra: no workspace {args.slug!r}", file=sys.stderr)
            return 1
        try:
            row = inboxes.add_inbox(services.store, workspace_id=ws.id,  # type: ignore[arg-type]
                                    host=args.host, port=port, security=args.security,
                                    username=args.user, password=password, folder=args.folder,
                                    done_folder=args.move_to)
        except ValueError as e:
            print(f"workestra: {e}", file=sys.stderr)
            return 2
    finally:
        services.close()
    print("added " + describe_inbox(row, args.slug) + " (serve reads it within a minute)")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    services = _services(args)
    try:
        rows = inboxes.inboxes_with_workspace(services.store)
    finally:
        services.close()
    for row, slug in rows:
        print(describe_inbox(row, slug))
    if not rows:
        print("no IMAP inboxes (add one with: workestra inboxes add SLUG --host ...)")
    return 0


def cmd_switch(args: argparse.Namespace) -> int:
    """A disabled inbox is left alone: its poller stops at its next connection or retry."""
    on = args.verb == "enable"
    services = _services(args)
    try:
        found = inboxes.set_enabled(services.store, args.inbox_id, on)
    finally:
        services.close()
    if not found:
        print(f"workestra: no inbox {args.inbox_id} (see: workestra inboxes list)",
              file=sys.stderr)
        return 1
    print(f"inbox {args.inbox_id} {'enabled' if on else 'disabled'}"
          + ("" if on else " (its mail stays; enable it to read on from where it stopped)"))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("inboxes", help="IMAP support inboxes read into tickets")
    verbs = parser.add_subparsers(dest="verb", required=True)

    add = verbs.add_parser("add", help="read an IMAP folder into a workspace's tickets")
    add.add_argument("slug", help="the workspace whose tickets the mail becomes")
    add.add_argument("--host", required=True)
    add.add_argument("--port", type=int, help="default 993 with tls, else 143")
    add.add_argument("--security", choices=inboxes.SECURITY, default="tls",
                     help="tls (IMAPS, default), starttls, or none (loopback only)")
    add.add_argument("--user", required=True)
    secret = add.add_mutually_exclusive_group(required=True)
    secret.add_argument("--password-env", metavar="VAR",
                        help="read the password from this environment variable")
    secret.add_argument("--password", help="the password (visible in ps; prefer --password-env)")
    add.add_argument("--folder", default="INBOX", help="the folder to read (default INBOX)")
    add.add_argument("--move-to", metavar="FOLDER",
                     help="move read mail here (created if missing); default: flag it \\Seen")
    add.add_argument("--data-dir")
    add.set_defaults(func=cmd_add)

    ls = verbs.add_parser("list", help="show every inbox, its position and last error")
    ls.add_argument("--data-dir")
    ls.set_defaults(func=cmd_list)

    for verb, what in (("disable", "stop reading an inbox"), ("enable", "read it again")):
        switch = verbs.add_parser(verb, help=what)
        switch.add_argument("inbox_id", type=int, metavar="ID", help="as `inboxes list` shows")
        switch.add_argument("--data-dir")
        switch.set_defaults(func=cmd_switch)
