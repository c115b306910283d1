"""`workestra dkim generate SLUG [--selector s1] [--rotate]`: a workspace signing key and its DNS
record. A workspace that has a key keeps it (its record is printed again) unless --rotate."""

from __future__ import annotations

import argparse
import sys

from gateway import dkim_keys


def cmd_generate(args: argparse.Namespace) -> int:
    from gateway.cli import _settings
    from gateway.services import build_services

    services = build_services(_settings(args))
    try:
        with services.store.tx() as s:
            ws = services.store.workspace_by_slug(args.slug, s=s)
            if ws is None:
                print(f"workestra: no workspace {args.slug!r}", file=sys.stderr)
                return 1
            sender = services.mailer.sender_address(s, ws)
            domain = sender.rpartition("@")[2]
            current = ws.dkim_selector or "s1"
            if ws.dkim_private_key and not args.rotate:
                # Never replaced without --rotate, whatever --selector says: the record in DNS
                # would stop matching the mail signed with the key it names.
                selector = current
                txt = dkim_keys.public_txt(ws.dkim_private_key)
                note = f"the workspace already has a key, selector {current}; nothing changed"
                if args.selector not in (None, current):
                    note += f" (--rotate --selector {args.selector} replaces it)"
                else:
                    note += " (--rotate replaces it)"
            else:
                selector = args.selector or (current if ws.dkim_private_key else "s1")
                pair = dkim_keys.generate()
                ws.dkim_selector, ws.dkim_private_key = selector, pair.private_pem
                s.add(ws)
                txt = pair.txt_value()
                note = f"selector {selector}; mail from {sender} is signed with it from now on"
    finally:
        services.close()
    print(f"DKIM key for {args.slug} ({note}). Publish this DNS TXT record:")
    print(f'{dkim_keys.record_name(selector, domain)}. IN TXT "{txt}"')
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    dkim = sub.add_parser("dkim", help="DKIM signing keys")
    verbs = dkim.add_subparsers(dest="verb", required=True)
    gen = verbs.add_parser("generate", help="make a workspace's key pair, print its DNS record")
    gen.add_argument("slug")
    gen.add_argument("--selector", help="DNS selector of a new key (default: the current "
                     "key's with --rotate, else s1); an existing key is kept without --rotate")
    gen.add_argument("--rotate", action="store_true", help="replace an existing key")
    gen.add_argument("--data-dir")
    gen.set_defaults(func=cmd_generate)
