"""Queues a templated mail in the outbox, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Callable

from sqlmodel import Session

from gateway.config import Settings
from gateway.outbound.compose import compose, new_message_id
from gateway.outbound.render import Brand, render
from gateway.tokens import loop_marker, reply_address, tracking_token
from storage.models import OutboundMessage, Ticket, Workspace
from storage.store import Store


class Mailer:
    """Renders and enqueues; delivery is the outbox worker's job, woken through `wake`."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._wakers: list[Callable[[], None]] = []

    def on_queued(self, callback: Callable[[], None]) -> None:
        self._wakers.append(callback)

    def wake(self) -> None:
        """Call after the transaction that queued mail has committed."""
        for callback in self._wakers:
            callback()

    def sender_address(self, s: Session, ws: Workspace) -> str:
        addresses = self.store.support_addresses(s, ws.id)  # type: ignore[arg-type]
        return addresses[0] if addresses else f"support@{ws.slug}.invalid"

    def tracking_url(self, ws: Workspace, ticket: Ticket, email: str) -> str:
        token = tracking_token(self.settings.secret_key, ticket.id, email)  # type: ignore[arg-type]
        return f"{self.settings.public_url}/portal/{ws.slug}/tickets/{ticket.reference}?t={token}"

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
    ) -> OutboundMessage:
        sender = self.sender_address(s, ws)
        domain = sender.rpartition("@")[2]
        message_id = new_message_id(domain)
        ctx = {"brand": Brand.of(ws, self.settings.public_url), "ticket": ticket,
               "reference": ticket.reference if ticket else None, **context}
        msg = compose(
            render(kind, ctx),
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
        )
        row = OutboundMessage(
            workspace_id=ws.id, ticket_id=ticket.id if ticket else None, kind=kind,  # type: ignore[arg-type]
            message_id=message_id, mail_from=sender, rcpt_to=to_address, raw=msg.as_bytes())
        s.add(row)
        return row
