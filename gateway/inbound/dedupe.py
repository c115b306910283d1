"""Stores the same message once per workspace: keyed on Message-ID, or the raw bytes' hash."""

from __future__ import annotations

from gateway.inbound.context import Context
from gateway.inbound.mail import InboundMail, Stop
from storage.blobs import sha256_hex


def dedupe(mail: InboundMail, ctx: Context) -> None:
    if ctx.store is None or ctx.s is None or mail.workspace_id is None:
        return
    message_id = mail.parsed.message_id if mail.parsed else None
    key, by_hash = (message_id, False) if message_id else (sha256_hex(mail.raw), True)
    # Two copies handled at once by two workers: the second waits here, then sees the first.
    ctx.store.lock_key(ctx.s, f"inbound:{mail.workspace_id}:{key}")
    earlier = ctx.store.duplicate_of(ctx.s, mail.workspace_id, key, by_hash=by_hash,
                                     exclude_id=mail.inbound_id or 0)
    if earlier is not None:
        mail.ticket_id = earlier.ticket_id
        raise Stop("ignored", f"duplicate of inbound message #{earlier.id}")
