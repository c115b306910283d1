"""The SMTP receiver: refuses unknown recipients at RCPT, spools at DATA, then answers 250.

`250` is sent only after the spool's commit that holds the message returned.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from collections.abc import Callable
from functools import cache

from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.inbound.spool import Spool
from storage.store import Store, normalise_address

log = logging.getLogger("workestra.smtp")
MAX_RECIPIENTS = 100  # per message: RFC 5321 section 4.5.3.1.8 asks servers to take at least 100


class ReceiveHandler:
    """aiosmtpd hooks only; parsing and threading happen later, off the SMTP conversation."""

    def __init__(self, store: Store, spool: Spool, on_spooled: Callable[[int], None], *,
                 known_for: float = 10.0) -> None:
        self.store = store
        self.spool = spool
        self.on_spooled = on_spooled
        self.known_for = known_for
        self._known: dict[str, tuple[int, float]] = {}  # address -> (workspace id, until)

    def __dir__(self) -> list[str]:
        """Only its hooks: aiosmtpd walks the handler's dir() on every connection too."""
        return _session_names(type(self))

    async def _workspace_id(self, address: str) -> int | None:
        """The address's workspace; known ones are remembered briefly, so most RCPTs skip the
        database. Unknown ones are always looked up: an address added a moment ago works."""
        key = normalise_address(address)
        now = time.monotonic()
        known = self._known.get(key)
        if known is not None and known[1] > now:
            return known[0]
        workspace = await asyncio.to_thread(self.store.workspace_for_address, key)
        if workspace is None:
            self._known.pop(key, None)
            return None
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[key] = (workspace.id, now + self.known_for)  # type: ignore[assignment]
        return workspace.id

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        # Only our own support addresses: no open relay, and no backscatter later.
        try:
            workspace_id = await self._workspace_id(address)
        except Exception:
            log.exception("recipient lookup failed for %s", address)
            return "451 4.3.0 Temporary failure, please try again later"
        if workspace_id is None:
            return "550 5.1.1 No such mailbox here"
        first = getattr(envelope, "workspace_id", None)
        if first is not None and first != workspace_id:
            # One message, one workspace: the sender retries this recipient in its own
            # transaction (RFC 5321 section 4.5.3.1.10), so each workspace gets its own copy.
            return "452 4.5.3 Too many recipients for one message, please send again"
        envelope.workspace_id = workspace_id  # type: ignore[attr-defined]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        try:
            # Waits for the group commit that includes this message, without holding a thread.
            inbound_id = await asyncio.wrap_future(self.spool.submit(
                raw, mail_from=envelope.mail_from or "", rcpt_tos=envelope.rcpt_tos))
        except Exception:
            # Not durable, so not accepted: the sender keeps the message and retries.
            log.exception("spooling failed")
            return "451 4.3.0 Could not store the message, please try again later"
        self.on_spooled(inbound_id)
        log.info("inbound %s spooled: %d bytes from <%s>", inbound_id, len(raw),
                 envelope.mail_from or "", extra={"fields": {"inbound": inbound_id,
                                                             "peer": session.peer[0]
                                                             if session.peer else None}})
        return f"250 2.0.0 OK queued as {inbound_id}"


# `<local@domain>`, dot-atoms only: the path nearly every sender writes in MAIL and RCPT.
_PLAIN_PATH = re.compile(
    r"\s*<((?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)>\s*+(?!\()")


class _SMTP(SMTP):
    """aiosmtpd's server, reading plain addresses without its full RFC 5322 parser.

    For each MAIL and RCPT, aiosmtpd builds a class and runs the standard library's header
    parser: a seventh of `serve`'s interpreter time while mail streams in (py-spy). A plain
    `<local@domain>` is read here with the same result; anything else (quoted local parts,
    comments, source routes, non-ASCII) still goes to aiosmtpd."""

    def __dir__(self) -> list[str]:
        """Only its commands and AUTH mechanisms. aiosmtpd's __init__ walks dir() twice on
        every connection to find them (`inspect.getmembers` also reads every property):
        with the handler's, 90 us a connection, against 24 us with these lists."""
        return _session_names(type(self))

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        m = _PLAIN_PATH.match(arg)
        if m is None:
            return super()._getaddr(arg)
        addr = m.group(1)
        if self.local_part_limit and len(addr.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return addr, arg[m.end():]


@cache
def _session_names(cls: type) -> list[str]:
    """What aiosmtpd looks for by name on a session and its handler, on every connection."""
    return sorted(n for n in dir(cls) if n.startswith(("smtp_", "auth_", "handle_")))


def smtp_factory(handler: ReceiveHandler, *, hostname: str, data_size_limit: int,
                 tls: ssl.SSLContext | None = None, timeout: float = 300.0
                 ) -> Callable[[], SMTP]:
    """A protocol factory for loop.create_server; aiosmtpd answers 552 past the size limit.
    With `tls`, STARTTLS is offered (and not required: MX senders without TLS still deliver).
    A client silent for `timeout` seconds is disconnected, so idle or dribbling clients
    cannot hold connections for ever."""
    def make() -> SMTP:
        return _SMTP(handler, hostname=hostname, data_size_limit=data_size_limit,
                    enable_SMTPUTF8=True, decode_data=False, ident="workestra ESMTP",
                    tls_context=tls, require_starttls=False, timeout=timeout)
    return make
