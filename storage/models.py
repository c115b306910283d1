"""The tables of the ticket store, one model per entity (SQLModel)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, DateTime, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

TICKET_STATUSES = ("open", "in_progress", "waiting", "resolved", "closed")
STATUS_LABELS = {
    "open": "Open",
    "in_progress": "In Progress",
    "waiting": "Waiting",
    "resolved": "Resolved",
    "closed": "Closed",
}
PRIORITIES = ("low", "medium", "high", "urgent")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(**kw) -> Field:  # type: ignore[valid-type]
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), **kw))


def _opt_ts() -> Field:  # type: ignore[valid-type]
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


def format_reference(number: int) -> str:
    return f"TKT-{number:04d}"


class Workspace(SQLModel, table=True):
    """A company using the product, with its white-label settings."""

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(unique=True, index=True, max_length=64)
    name: str
    brand_name: str | None = None
    primary_color: str | None = None
    logo_url: str | None = None
    support_email: str | None = None
    ticket_counter: int = 0  # last number handed out; bumped under a row lock
    assignment_mode: str = "round_robin"  # off | round_robin | least_open
    last_assigned_agent_id: int | None = None
    dkim_selector: str | None = None  # with the key below: signs this workspace's mail
    dkim_private_key: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = _ts(nullable=False)

    @property
    def display_name(self) -> str:
        return self.brand_name or self.name

    @property
    def color(self) -> str:
        return self.primary_color or "#2563eb"


class SupportAddress(SQLModel, table=True):
    """An address mail to which becomes tickets of one workspace."""

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    address: str = Field(unique=True, index=True)  # lower-cased


class Agent(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    name: str
    email: str = Field(index=True)
    available: bool = True
    api_key_hash: str | None = Field(default=None, index=True)
    password_hash: str | None = None
    created_at: datetime = _ts(nullable=False)

    __table_args__ = (UniqueConstraint("workspace_id", "email"),)


class Contact(SQLModel, table=True):
    """A customer, known only by an email address within one workspace."""

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    email: str
    name: str = ""
    created_at: datetime = _ts(nullable=False)

    __table_args__ = (UniqueConstraint("workspace_id", "email"),)


class Ticket(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    number: int
    contact_id: int = Field(foreign_key="contact.id", index=True)
    subject: str
    description: str = Field(default="", sa_column=Column(Text, nullable=False))
    status: str = "open"
    priority: str = "medium"
    channel: str = "email"  # email | portal | imap | api
    type: str = "Support Request"
    sentiment: float = 0.0
    assignee_id: int | None = Field(default=None, foreign_key="agent.id", index=True)
    resolution: str | None = None
    linked_ticket_id: int | None = Field(default=None, foreign_key="ticket.id")
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)
    resolved_at: datetime | None = _opt_ts()

    __table_args__ = (UniqueConstraint("workspace_id", "number"),)

    @property
    def reference(self) -> str:
        return format_reference(self.number)

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.status, self.status.title())


class TicketParticipant(SQLModel, table=True):
    """Someone CC'd on a ticket whose replies are accepted."""

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    email: str
    name: str = ""

    __table_args__ = (UniqueConstraint("ticket_id", "email"),)


class Comment(SQLModel, table=True):
    """A message on a ticket: public (the customer sees it) or internal (agents only)."""

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    author_kind: str = "customer"  # customer | agent | system | unverified
    author_name: str = ""
    author_email: str = ""
    agent_id: int | None = Field(default=None, foreign_key="agent.id")
    body: str = Field(default="", sa_column=Column(Text, nullable=False))
    body_html: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # nh3-clean
    internal: bool = False
    held_reason: str | None = None  # set when a reply was held for an agent to accept
    inbound_message_id: int | None = Field(default=None, foreign_key="inboundmessage.id")
    created_at: datetime = _ts(nullable=False)


class Attachment(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    comment_id: int | None = Field(default=None, foreign_key="comment.id", index=True)
    filename: str
    content_type: str
    size: int
    sha256: str = Field(index=True)
    inline: bool = False
    content_id: str | None = None  # for cid: references in the HTML
    created_at: datetime = _ts(nullable=False)


class InboundMessage(SQLModel, table=True):
    """One received mail: its raw bytes and its one recorded outcome."""

    id: int | None = Field(default=None, primary_key=True)
    channel: str = "smtp"  # smtp | imap
    imap_inbox_id: int | None = Field(default=None, foreign_key="imapinbox.id")
    mail_from: str = ""
    rcpt_tos: str = ""  # comma-separated envelope recipients
    raw_sha256: str = Field(index=True)
    # The bytes: committed with the row when spooled (group commit, one fsync for many
    # messages); kept here once handled up to 256 KB, else moved to the blob store.
    raw: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    size: int = 0
    message_id: str | None = Field(default=None, index=True)
    workspace_id: int | None = Field(default=None, foreign_key="workspace.id", index=True)
    state: str = Field(default="received", index=True)  # received | done
    outcome: str | None = None  # new_ticket | comment | ignored | failed
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    classification: str | None = None
    thread_method: str | None = None
    dkim: str | None = None  # e.g. "pass example.com", "fail example.com: body hash", "none"
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    received_at: datetime = _ts(nullable=False)
    processed_at: datetime | None = _opt_ts()

    # Dedupe and threading look a Message-ID (or hash) up within a workspace on every message.
    # With only single-column indexes SQLite, before any ANALYZE, walks the workspace's index:
    # a scan of all its mail per message, slower every day.
    __table_args__ = (Index("ix_inboundmessage_workspace_message", "workspace_id", "message_id"),
                      Index("ix_inboundmessage_workspace_sha256", "workspace_id", "raw_sha256"))


class SigningDomain(SQLModel, table=True):
    """A sender domain seen with a valid DKIM signature: its unsigned mail is suspect later."""

    domain: str = Field(primary_key=True)
    last_pass_at: datetime = _ts(nullable=False)


class OutboundMessage(SQLModel, table=True):
    """The outbox: a rendered mail, queued in the transaction that caused it."""

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    kind: str  # the template, e.g. customer/ticket_received
    agent_id: int | None = Field(default=None, foreign_key="agent.id")  # who wrote it, if anyone
    automatic: bool = True  # confirmations and notifications; counted against the hourly cap
    message_id: str = Field(unique=True, index=True)  # without angle brackets
    mail_from: str
    rcpt_to: str
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    state: str = Field(default="queued", index=True)  # queued | sent | failed | bounced
    attempts: int = 0
    next_attempt_at: datetime = _ts(nullable=False, index=True)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = _ts(nullable=False)
    sent_at: datetime | None = _opt_ts()
    bounced_at: datetime | None = _opt_ts()

    # The loop brake counts one address's recent automatic mail on every send: an index-only
    # range, with no row read per mail counted (a busy agent has 120 an hour).
    __table_args__ = (Index("ix_outboundmessage_rcpt_recent", "rcpt_to", "automatic",
                            "created_at"),)


class DeliveryAttempt(SQLModel, table=True):
    """One try at handing an outbound mail to the relay, whatever came of it."""

    id: int | None = Field(default=None, primary_key=True)
    outbound_id: int = Field(foreign_key="outboundmessage.id", index=True)
    result: str  # sent | retry | failed
    detail: str = Field(default="", sa_column=Column(Text, nullable=False))
    created_at: datetime = _ts(nullable=False)


class ImapInbox(SQLModel, table=True):
    """A support inbox polled over IMAP; its mail becomes tickets of one workspace."""

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    host: str
    port: int = 993
    security: str = "tls"  # tls | starttls | none
    username: str
    password: str
    folder: str = "INBOX"
    done_folder: str | None = None  # move fetched mail here; None: flag it \\Seen instead
    # IMAP UIDs and UIDVALIDITY are unsigned 32-bit: wider than PostgreSQL's integer.
    uidvalidity: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    last_uid: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    enabled: bool = True
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = _ts(nullable=False)


class Notification(SQLModel, table=True):
    """An in-app notice for an agent."""

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    agent_id: int = Field(foreign_key="agent.id", index=True)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id")
    kind: str  # ticket_assigned | customer_replied | bounce
    text: str
    read: bool = False
    created_at: datetime = _ts(nullable=False)


class KBArticle(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    title: str
    body: str = Field(default="", sa_column=Column(Text, nullable=False))
    published: bool = False
    visibility: str = "public"  # public | workspace | internal
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)

    __table_args__ = (UniqueConstraint("workspace_id", "title"),)


class DeflectionEvent(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    session_id: str = Field(index=True)
    article_id: int | None = Field(default=None, foreign_key="kbarticle.id")
    event: str  # shown | clicked | dismissed | submitted
    created_at: datetime = _ts(nullable=False)


class CSATRating(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", unique=True)
    rating: int
    comment: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = _ts(nullable=False)
