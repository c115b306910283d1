"""Queues a templated mail in the outbox, inside the caller's transaction.

Every mail is rendered, DKIM-signed and stored as the exact bytes the relay will get; the
outbox worker gives it an envelope sender that names it (VERP), so a bounce maps back.
Automatic mail (confirmations, notifications, fresh links) to one address is capped per hour:
whatever loop an auto-responder builds with us, it runs dry after a few mails.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import NamedTuple

from sqlmodel import Session

from gateway.config import Settings
from gateway.outbound.compose import Composed, compose, new_message_id
from gateway.outbound.dkim_sign import signature_field
from gateway.outbound.render import Brand, override_root, render
from gateway.tokens import feedback_token, loop_marker, reply_address, tracking_token
from storage import bare
from storage.models import OutboundMessage, Ticket, Workspace, utcnow
from storage.store import Store

log = logging.getLogger("workestra.outbox")
WARN_EVERY = 15 * 60.0  # seconds between warnings about one address's held-back mail
_TABLE = OutboundMessage.__table__  # type: ignore[attr-defined]
_INSERT = bare.insert_of(_TABLE, (
    "workspace_id", "ticket_id", "kind", "agent_id", "automatic", "message_id", "mail_from",
    "rcpt_to", "raw", "state", "attempts", "next_attempt_at", "created_at"), returning_id=True)


class Queued(NamedTuple):
    id: int
    message_id: str  # without angle brackets


class Mailer:
    """Renders and enqueues; delivery is the outbox worker's job, woken through `wake`."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._wakers: list[Callable[[], None]] = []
        self._warned: dict[str, float] = {}  # address -> when its held-back mail was last warned
        self._last_url: tuple[tuple, str] | None = None  # see tracking_url

    def on_queued(self, callback: Callable[[], None]) -> None:
        self._wakers.append(callback)

    def wake(self) -> None:
        """Call after the transaction that queued mail has committed."""
        for callback in self._wakers:
            callback()

    def sender_address(self, s: Session, ws: Workspace) -> str:
        return (self.store.sender_address(s, ws.id)  # type: ignore[arg-type]
                or f"support@{ws.slug}.invalid")

    def tracking_url(self, ws: Workspace, ticket: Ticket, email: str) -> str:
        """The customer's link. The last one made is made again only in another second (the
        token's timestamp has seconds): a new ticket's confirmation and the page that
        answers its form both show it (signing it once more cost 110k of a submission's 7.3M
        instructions in the intake, callgrind)."""
        key = (ws.slug, ticket.id, ticket.reference, email.lower(), int(time.time()))
        last = self._last_url  # one read: another thread may replace it meanwhile
        if last is not None and last[0] == key:
            return last[1]
        token = tracking_token(self.settings.secret_key, ticket.id, email)  # type: ignore[arg-type]
        url = f"{self.settings.public_url}/portal/{ws.slug}/tickets/{ticket.reference}?t={token}"
        self._last_url = (key, url)
        return url

    def feedback_url(self, ws: Workspace, ticket: Ticket, email: str) -> str:
        """The CSAT link in the resolved mail: its own token, valid for 7 days."""
        token = feedback_token(self.settings.secret_key, ticket.id, email)  # type: ignore[arg-type]
        return f"{self.settings.public_url}/portal/{ws.slug}/feedback?t={token}"

    def queue(
        self,
        s: Session,
        ws: Workspace,
        *,
        kind: str,
        to_name: str,
        to_address: str,
        context: dict,
        ticket: Ticket | None = None,
        in_reply_to: str | None = None,
        references: list[str] | None = None,
        automatic: bool = True,
        agent_id: int | None = None,
        files: Sequence[tuple[str, str, bytes]] = (),
    ) -> Queued | None:
        """The queued mail, or None when the hourly cap on automatic mail holds it back."""
        to_address = to_address.strip().lower()
        if automatic:
            limit = self.hourly_limit(s, ws, to_address)
            # Counted once per transaction and kept up to date here: a batch of fifty
            # messages asks the database once per address, not once per mail.
            counts = s.info.setdefault("automatic_counts", {})
            if to_address not in counts:
                counts[to_address] = self.store.automatic_mail_count(
                    s, to_address, timedelta(hours=1), limit)
            if counts[to_address] >= limit:
                self._held_back(kind, to_address, limit)
                return None
            counts[to_address] += 1  # a savepoint rolled back overstates it: the safe side
        sender = self.sender_address(s, ws)
        domain = sender.rpartition("@")[2]
        message_id = new_message_id(domain)
        ctx = {"brand": Brand.of(ws, self.settings.public_url), "ticket": ticket,
               "reference": ticket.reference if ticket else None, **context}
        msg = compose(
            render(kind, ctx, override_root=override_root(self.settings.data_dir),
                   workspace=ws.slug),
            from_name=ws.display_name,
            from_address=sender,
            to_name=to_name,
            to_address=to_address,
            message_id=message_id,
            loop_marker=loop_marker(self.settings.secret_key),
            reply_to=reply_address(self.settings.secret_key, sender, ticket.id)
            if ticket is not None else None,
            in_reply_to=in_reply_to,
            references=references,
            automatic=automatic,
            attachments=files,
        )
        now = utcnow()
        # One plain INSERT on the session's connection, in its transaction: an ORM object
        # and its flush cost more than rendering the mail. The envelope sender is the plain
        # address; the outbox worker turns it into this row's VERP address when it sends.
        outbound_id = bare.scalar(s, _INSERT, {
            "workspace_id": ws.id, "ticket_id": ticket.id if ticket else None, "kind": kind,
            "agent_id": agent_id, "automatic": automatic, "message_id": message_id,
            "mail_from": sender, "rcpt_to": to_address, "raw": self.sign(ws, sender, msg),
            "state": "queued", "attempts": 0, "next_attempt_at": now, "created_at": now,
        })
        return Queued(outbound_id, message_id)

    def _held_back(self, kind: str, to_address: str, limit: int) -> None:
        """One warning per address per quarter hour: a busy day's held-back notices, or a
        bot's, would otherwise be thousands of identical lines; the rest go to debug."""
        now = time.monotonic()
        last = self._warned.get(to_address)
        quiet = last is not None and now - last < WARN_EVERY
        if not quiet:
            if len(self._warned) > 10_000:
                self._warned.clear()
            self._warned[to_address] = now
        log.log(logging.DEBUG if quiet else logging.WARNING,
                "not sending %s to %s: %d automatic mails in the last hour already%s", kind,
                to_address, limit, "" if quiet else " (further ones are logged at debug level "
                "for 15 minutes)")

    def hourly_limit(self, s: Session, ws: Workspace, to_address: str) -> int:
        """Customers and strangers: the loop brake. The workspace's own agents get a wider one:
        a busy queue sends them many notifications, and their auto-replies are ignored."""
        if to_address in self.store.team(s, ws.id).emails:  # type: ignore[arg-type]
            return self.settings.agent_mail_per_hour
        return self.settings.auto_mail_per_hour

    def sign(self, ws: Workspace, sender: str, msg: Composed) -> bytes:
        """The bytes to send, signed with the workspace's key for its own domain; else the
        gateway's; else unsigned."""
        if ws.dkim_private_key and ws.dkim_selector:
            selector, domain, pem = (ws.dkim_selector, sender.rpartition("@")[2],
                                     ws.dkim_private_key)
        elif self.settings.dkim is not None:
            key = self.settings.dkim
            selector, domain, pem = key.selector, key.domain, key.private_pem
        else:
            return msg.as_bytes()
        return signature_field(msg.headers, msg.body, selector=selector, domain=domain,
                               private_pem=pem) + msg.as_bytes()
