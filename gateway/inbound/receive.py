"""The SMTP receiver: refuses unknown recipients at RCPT, spools at DATA, then answers 250."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.inbound.spool import Spool
from storage.store import Store

log = logging.getLogger("workestra.smtp")


class ReceiveHandler:
    """aiosmtpd hooks only; parsing and threading happen later, off the SMTP conversation."""

    def __init__(self, store: Store, spool: Spool, on_spooled: Callable[[int], None]) -> None:
        self.store = store
        self.spool = spool
        self.on_spooled = on_spooled

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        # Only our own support addresses: no open relay, and no backscatter later.
        try:
            workspace = await asyncio.to_thread(self.store.workspace_for_address, address)
        except Exception:
            log.exception("recipient lookup failed for %s", address)
            return "451 4.3.0 Temporary failure, please try again later"
        if workspace is None:
            return "550 5.1.1 No such mailbox here"
        first = getattr(envelope, "workspace_id", None)
        if first is not None and first != workspace.id:
            # One message, one workspace: the sender retries this recipient in its own
            # transaction (RFC 5321 section 4.5.3.1.10), so each workspace gets its own copy.
            return "452 4.5.3 Too many recipients for one message, please send again"
        envelope.workspace_id = workspace.id  # type: ignore[attr-defined]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        try:
            inbound_id = await asyncio.to_thread(
                self.spool.accept, raw, mail_from=envelope.mail_from or "",
                rcpt_tos=envelope.rcpt_tos)
        except Exception:
            # Not durable, so not accepted: the sender keeps the message and retries.
            log.exception("spooling failed")
            return "451 4.3.0 Could not store the message, please try again later"
        self.on_spooled(inbound_id)
        return f"250 2.0.0 OK queued as {inbound_id}"


def smtp_factory(handler: ReceiveHandler, *, hostname: str, data_size_limit: int
                 ) -> Callable[[], SMTP]:
    """A protocol factory for loop.create_server; aiosmtpd answers 552 past the size limit."""
    def make() -> SMTP:
        return SMTP(handler, hostname=hostname, data_size_limit=data_size_limit,
                    enable_SMTPUTF8=True, decode_data=False, ident="workestra ESMTP")
    return make
