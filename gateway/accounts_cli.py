"""`workestra workspaces ...` and `workestra agents ...`: accounts, from the command line.

The API key is printed once, alone on the last line of stdout, so a script can take it with
`tail -n 1`; only its hash is stored. A password is read from stdin (a pipe) or a prompt,
never from the command line where `ps` and shell history would keep it.
"""

from __future__ import annotations

import argparse
import getpass
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from gateway.assignment import MODES
from gateway.config import load_settings
from gateway.credentials import MIN_PASSWORD, hash_api_key, hash_password, new_api_key
from storage.engine import make_engine
from storage.migrate import upgrade
from storage.models import Agent, Workspace
from storage.store import Store, normalise_address

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")


class AccountError(Exception):
    """Something the user can fix; printed as one line, exit code 1."""


@contextmanager
def _store(args: argparse.Namespace) -> Iterator[Store]:
    settings = load_settings(data_dir=getattr(args, "data_dir", None))
    engine = make_engine(settings.database_url)
    try:
        upgrade(engine)  # so the first command on a fresh data directory works
        yield Store(engine)
    finally:
        engine.dispose()


def _workspace(store: Store, s: Session, slug: str) -> Workspace:
    ws = store.workspace_by_slug(slug, s)
    if ws is None:
        raise AccountError(f"no workspace {slug!r} (create it with `workestra workspaces add`)")
    return ws


def _email(value: str) -> str:
    email = value.strip().lower()
    if not EMAIL.match(email):
        raise AccountError(f"not an email address: {value!r}")
    return email


def _agent(store: Store, s: Session, slug: str, email: str) -> Agent:
    ws = _workspace(store, s, slug)
    agent = store.agent_by_email(s, ws.id, _email(email))  # type: ignore[arg-type]
    if agent is None:
        raise AccountError(f"no agent {email!r} in workspace {slug!r}")
    return agent


# -- workspaces --------------------------------------------------------------------------------

def cmd_workspaces_add(args: argparse.Namespace) -> int:
    if not SLUG.match(args.slug):
        raise AccountError(f"slug {args.slug!r}: use lower-case letters, digits and '-'")
    addresses = [normalise_address(_email(a)) for a in args.address]
    with _store(args) as store, store.tx() as s:
        if store.workspace_by_slug(args.slug, s) is not None:
            raise AccountError(f"workspace {args.slug!r} exists already")
        for address in addresses:
            owner = store.workspace_for_address(address, s)
            if owner is not None:
                raise AccountError(f"{address} already belongs to workspace {owner.slug!r}")
        ws = Workspace(slug=args.slug, name=args.name.strip(), support_email=addresses[0],
                       assignment_mode=args.assignment)
        s.add(ws)
        s.flush()
        for address in addresses:
            store.add_support_address(s, ws.id, address)  # type: ignore[arg-type]
    print(f"workspace {args.slug} created; mail to {', '.join(addresses)} becomes its tickets")
    return 0


def cmd_workspaces_list(args: argparse.Namespace) -> int:
    with _store(args) as store, store.read() as s:
        for ws in s.exec(select(Workspace).order_by(Workspace.slug)):
            addresses = store.support_addresses(s, ws.id)
            print(f"{ws.slug}\t{ws.name}\t{ws.assignment_mode}\t{', '.join(addresses)}")
    return 0


# -- agents ------------------------------------------------------------------------------------

def cmd_agents_add(args: argparse.Namespace) -> int:
    key = new_api_key()
    email = _email(args.email)
    try:
        with _store(args) as store, store.tx() as s:
            ws = _workspace(store, s, args.slug)
            if store.agent_by_email(s, ws.id, email) is not None:  # type: ignore[arg-type]
                raise AccountError(f"agent {email} exists already in {args.slug!r} "
                                   "(`workestra agents key` issues a new key)")
            s.add(Agent(workspace_id=ws.id, name=args.name.strip(), email=email,  # type: ignore[arg-type]
                        available=not args.away, api_key_hash=hash_api_key(key)))
    except IntegrityError:  # added concurrently
        raise AccountError(f"agent {email} exists already in {args.slug!r}") from None
    print(f"agent {email} added to {args.slug}. Their API key, shown only this once:")
    print(key)
    return 0


def cmd_agents_key(args: argparse.Namespace) -> int:
    key = new_api_key()
    with _store(args) as store, store.tx() as s:
        agent = _agent(store, s, args.slug, args.email)
        agent.api_key_hash = hash_api_key(key)
        s.add(agent)
    print(f"new API key for {agent.email} (the old one no longer works), shown only this once:")
    print(key)
    return 0


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("New password: ")
        if getpass.getpass("Repeat it: ") != first:
            raise AccountError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def cmd_agents_password(args: argparse.Namespace) -> int:
    password = _read_password()
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password needs at least {MIN_PASSWORD} characters")
    with _store(args) as store, store.tx() as s:
        agent = _agent(store, s, args.slug, args.email)
        agent.password_hash = hash_password(password)
        s.add(agent)
    print(f"console password set for {agent.email}")
    return 0


def cmd_agents_list(args: argparse.Namespace) -> int:
    with _store(args) as store, store.read() as s:
        ws = _workspace(store, s, args.slug)
        for a in store.agents(s, ws.id):  # type: ignore[arg-type]
            state = "available" if a.available else "away"
            login = "password" if a.password_hash else "no password"
            print(f"{a.id}\t{a.email}\t{a.name}\t{state}\t{login}")
    return 0


def _guard(func):
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except AccountError as e:
            print(f"workestra: {e}", file=sys.stderr)
            return 1
    return run


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `workspaces add|list` and `agents add|key|password|list`."""
    ws = subparsers.add_parser("workspaces", help="create and list workspaces")
    ws_sub = ws.add_subparsers(dest="workspaces_command", required=True)
    p = ws_sub.add_parser("add", help="create a workspace with its support address")
    p.add_argument("slug", metavar="SLUG")
    p.add_argument("--name", required=True)
    p.add_argument("--address", required=True, action="append",
                   help="a support address (repeat for more); the first one sends mail")
    p.add_argument("--assignment", choices=MODES, default="round_robin",
                   help="auto-assignment mode (default round_robin)")
    p.add_argument("--data-dir")
    p.set_defaults(func=_guard(cmd_workspaces_add))
    p = ws_sub.add_parser("list", help="list workspaces and their addresses")
    p.add_argument("--data-dir")
    p.set_defaults(func=_guard(cmd_workspaces_list))

    agents = subparsers.add_parser("agents", help="manage a workspace's agents")
    ag_sub = agents.add_subparsers(dest="agents_command", required=True)
    p = ag_sub.add_parser("add", help="add an agent; prints its API key once, on the last line")
    p.add_argument("slug", metavar="SLUG")
    p.add_argument("--name", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--away", action="store_true", help="start as away (not auto-assigned)")
    p.add_argument("--data-dir")
    p.set_defaults(func=_guard(cmd_agents_add))
    p = ag_sub.add_parser("key", help="issue a new API key (the old one stops working)")
    p.add_argument("slug", metavar="SLUG")
    p.add_argument("email", metavar="EMAIL")
    p.add_argument("--data-dir")
    p.set_defaults(func=_guard(cmd_agents_key))
    p = ag_sub.add_parser("password", help="set a console password (read from stdin or a prompt)")
    p.add_argument("slug", metavar="SLUG")
    p.add_argument("email", metavar="EMAIL")
    p.add_argument("--data-dir")
    p.set_defaults(func=_guard(cmd_agents_password))
    p = ag_sub.add_parser("list", help="list a workspace's agents")
    p.add_argument("slug", metavar="SLUG")
    p.add_argument("--data-dir")
    p.set_defaults(func=_guard(cmd_agents_list))


def main(argv: list[str] | None = None) -> int:
    """`python -m gateway.accounts_cli ...`: the same commands without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="workestra")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
