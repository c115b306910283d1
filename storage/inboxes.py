"""IMAP support inboxes: their settings, how far each was read, and the last error seen.

Small verbs so the poller and the CLI share one definition of where an inbox stands.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import select

from storage.models import ImapInbox, InboundMessage, Workspace
from storage.store import Store

SECURITY = ("tls", "starttls", "none")


def add_inbox(store: Store, *, workspace_id: int, host: str, port: int, security: str,
              username: str, password: str, folder: str = "INBOX",
              done_folder: str | None = None) -> ImapInbox:
    """Records a new inbox, enabled, to be read from its first message."""
    if security not in SECURITY:
        raise ValueError(f"security must be one of {', '.join(SECURITY)}, not {security!r}")
    if not 0 < port < 65536:
        raise ValueError(f"port must be 1-65535, not {port}")
    row = ImapInbox(workspace_id=workspace_id, host=host, port=port, security=security,
                    username=username, password=password, folder=folder,
                    done_folder=done_folder or None)
    with store.tx() as s:
        s.add(row)
        s.flush()
    return row


def inbox(store: Store, inbox_id: int) -> ImapInbox | None:
    with store.read() as s:
        return s.get(ImapInbox, inbox_id)


def enabled_inboxes(store: Store) -> list[ImapInbox]:
    with store.read() as s:
        return list(s.exec(select(ImapInbox).where(ImapInbox.enabled)
                           .order_by(ImapInbox.id)))  # type: ignore[arg-type]


def inboxes_with_workspace(store: Store) -> list[tuple[ImapInbox, str]]:
    """Every inbox with its workspace's slug, for listing."""
    with store.read() as s:
        rows = s.exec(select(ImapInbox, Workspace.slug)
                      .join(Workspace, Workspace.id == ImapInbox.workspace_id)
                      .order_by(ImapInbox.id))  # type: ignore[arg-type]
        return [(row, slug) for row, slug in rows]


def save_position(store: Store, inbox_id: int, uidvalidity: int, last_uid: int) -> None:
    """Called only once the message with `last_uid` (and all before it) is durable."""
    with store.tx() as s:
        s.exec(update(ImapInbox).where(ImapInbox.id == inbox_id)  # type: ignore[call-overload]
               .values(uidvalidity=uidvalidity, last_uid=last_uid))


def set_enabled(store: Store, inbox_id: int, enabled: bool) -> bool:
    """Turn an inbox on or off (its position and history stay); False if there is no such."""
    with store.tx() as s:
        row = s.get(ImapInbox, inbox_id)
        if row is None:
            return False
        row.enabled = enabled
        s.add(row)
        return True


def record_error(store: Store, inbox_id: int, error: str | None) -> None:
    """What went wrong last (None clears it once the inbox works again)."""
    with store.tx() as s:
        s.exec(update(ImapInbox).where(ImapInbox.id == inbox_id)  # type: ignore[call-overload]
               .values(last_error=error))


def already_spooled(store: Store, inbox_id: int, raw_sha256: str) -> bool:
    """These exact bytes were already taken from this inbox.

    Closes the gap between the spool commit and saving the position: a message fetched again
    after a dropped connection or a crash is not spooled twice.
    """
    with store.read() as s:
        found = s.exec(select(InboundMessage.id)
                       .where(InboundMessage.imap_inbox_id == inbox_id,
                              InboundMessage.raw_sha256 == raw_sha256).limit(1)).first()
        return found is not None
