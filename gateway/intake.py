"""The one intake: the rules that decide what happens to a ticket, for every channel.

Mail, IMAP and the portal all call these verbs inside their own transaction, so the ticket,
its number, its assignment, the notifications and the outgoing mail commit together or not at
all. The caller commits, then calls `mailer.wake()` so the outbox worker sends at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from sqlmodel import Session

from gateway.assignment import next_assignee
from gateway.outbound.mailer import Mailer
from gateway.sentiment import sentiment
from storage import bare
from storage.blobs import BlobStore
from storage.models import (
    Agent,
    Attachment,
    Comment,
    Contact,
    Notification,
    OutboundMessage,
    Ticket,
    TicketParticipant,
    Workspace,
    utcnow,
)
from storage.store import AgentRef, ContactRef, Store, held

REOPENED_BY_REPLY = ("waiting", "resolved")
# A plain INSERT: every new ticket and reply notifies its agent, and an ORM object and its
# flush cost more than the statement.
_NOTIFY = bare.insert_of(Notification.__table__, (  # type: ignore[attr-defined]
    "workspace_id", "agent_id", "ticket_id", "kind", "text", "read", "created_at"))


@dataclass
class NewFile:
    """A file that arrives with a ticket or a reply."""

    filename: str
    content_type: str
    data: bytes
    inline: bool = False
    content_id: str | None = None  # an inline image the HTML refers to as cid:...


@dataclass
class Person:
    name: str
    email: str


@dataclass
class TicketRequest:
    workspace_id: int
    customer: Person
    subject: str
    description: str
    channel: str = "email"
    type: str = "Support Request"
    files: Sequence[NewFile] = ()
    participants: Sequence[Person] = ()
    message_chain: list[str] = field(default_factory=list)  # the customer's References + own id
    linked_ticket_id: int | None = None
    # The caller's copy of the workspace, for the mail's branding and sender, when it has a
    # recent one (the portal keeps each for two seconds); read in the transaction otherwise.
    workspace: Workspace | None = None
    # Its sentiment, when the caller scored it before the transaction (`Intake.prepared`).
    sentiment: float | None = None


def _subject(req: TicketRequest) -> str:
    return " ".join(req.subject.split()) or "(no subject)"


class Intake:
    def __init__(self, store: Store, blobs: BlobStore, mailer: Mailer) -> None:
        self.store = store
        self.blobs = blobs
        self.mailer = mailer

    # -- new tickets ---------------------------------------------------------------------------

    @staticmethod
    def prepared(req: TicketRequest) -> TicketRequest:
        """The request with what needs no database done already (its sentiment): a caller
        that queues for the database (the portal's group commit) does it before its turn."""
        return replace(req, sentiment=sentiment(_subject(req), req.description))

    def open_ticket(self, s: Session, req: TicketRequest) -> Ticket:
        """Contact, number, assignment, sentiment, notifications and confirmation, atomically."""
        taken = self.store.take_ticket_number(s, req.workspace_id)  # locks the workspace row
        ws = req.workspace or held(s, Workspace, req.workspace_id)
        assert ws is not None and ws.id == req.workspace_id  # its row was just locked
        contact = self.store.upsert_contact(s, req.workspace_id, req.customer.email,
                                            req.customer.name)
        subject = _subject(req)
        ticket = Ticket(
            workspace_id=req.workspace_id, number=taken.number, contact_id=contact.id,
            subject=subject[:500], description=req.description, channel=req.channel,
            type=req.type, sentiment=req.sentiment if req.sentiment is not None
            else sentiment(subject, req.description),
            linked_ticket_id=req.linked_ticket_id,
            # Given, not left to the default factory: pydantic inspects a factory's signature
            # on every construction (18 of a Ticket's 74 us).
            created_at=(now := utcnow()), updated_at=now)
        assignee = next_assignee(s, self.store, req.workspace_id, taken)
        ticket.assignee_id = assignee.id if assignee else None
        self.store.add_new(s, ticket)
        self._add_files(s, ticket, None, req.files)
        for p in req.participants:
            self.add_participant(s, ticket, p)
        self._confirm(s, ws, ticket, contact, req.message_chain)
        if assignee is not None:
            self._notify(s, ws, ticket, assignee, kind="ticket_assigned",
                         text=f"{ticket.reference} assigned to you: {ticket.subject}",
                         context={"customer_name": contact.name,
                                  "customer_email": contact.email})
        return ticket

    def _confirm(self, s: Session, ws: Workspace, ticket: Ticket, contact: ContactRef,
                 chain: list[str]) -> None:
        self.mailer.queue(
            s, ws, kind="customer/ticket_received", to_name=contact.name,
            to_address=contact.email, ticket=ticket,
            context={"customer_name": contact.name,
                     "tracking_url": self.mailer.tracking_url(ws, ticket, contact.email)},
            in_reply_to=chain[-1] if chain else None, references=chain)

    # -- replies -------------------------------------------------------------------------------

    def add_customer_reply(self, s: Session, ticket: Ticket, author: Person, body: str, *,
                           files: Sequence[NewFile] = (), body_html: str | None = None,
                           inbound_message_id: int | None = None) -> Comment:
        """A reply from the ticket's customer or a participant: public, and it reopens."""
        reopened = ticket.status in REOPENED_BY_REPLY
        if reopened:
            ticket.status = "open"
            ticket.resolved_at = None
            ticket.updated_at = utcnow()
            s.add(ticket)
        else:  # most replies: only the time moves
            self.store.touch_ticket(s, ticket, utcnow())
        self._learn_name(s, ticket, author)
        comment = self.store.add_new(s, Comment(
            ticket_id=ticket.id, author_kind="customer", author_name=author.name,
            author_email=author.email.lower(), body=body, body_html=body_html,
            inbound_message_id=inbound_message_id))
        self._add_files(s, ticket, comment, files)
        self._notify_assignee(s, ticket, comment, reopened=reopened)
        return comment

    @staticmethod
    def _learn_name(s: Session, ticket: Ticket, author: Person) -> None:
        """A customer first known by a bare address gets the name their reply gives: agents
        and later mail greet them by it. A name already known is never replaced."""
        name = " ".join(author.name.split())[:200]
        if not name:
            return
        contact = held(s, Contact, ticket.contact_id)
        if contact is not None and not contact.name and contact.email == author.email.lower():
            contact.name = name
            s.add(contact)

    def hold_reply(self, s: Session, ticket: Ticket, author: Person, body: str, reason: str, *,
                   files: Sequence[NewFile] = (), body_html: str | None = None,
                   inbound_message_id: int | None = None) -> Comment:
        """A reply we cannot attribute to the customer: kept as an internal note for an agent."""
        comment = self.store.add_new(s, Comment(
            ticket_id=ticket.id, author_kind="unverified", author_name=author.name,
            author_email=author.email.lower(), body=body, internal=True, body_html=body_html,
            held_reason=reason, inbound_message_id=inbound_message_id))
        self._add_files(s, ticket, comment, files)
        self._notify_assignee(s, ticket, comment, reopened=False)
        return comment

    def record_bounce(self, s: Session, outbound: OutboundMessage, reason: str) -> None:
        """Our mail came back undelivered: mark it, note it on the ticket, tell the agent."""
        outbound.state, outbound.bounced_at = "bounced", utcnow()
        outbound.last_error = reason[:2000]
        s.add(outbound)
        ticket = s.get(Ticket, outbound.ticket_id) if outbound.ticket_id else None
        if ticket is None:
            return
        text = f"Mail to {outbound.rcpt_to} bounced: {reason}"
        s.add(Comment(ticket_id=ticket.id, author_kind="system", author_name="Mail delivery",
                      body=text, internal=True))
        agent_id = outbound.agent_id or ticket.assignee_id
        if agent_id is not None:  # in-app only: a bounce must not cause more mail
            s.add(Notification(workspace_id=ticket.workspace_id, agent_id=agent_id,
                               ticket_id=ticket.id, kind="bounce",
                               text=f"{ticket.reference}: {text}"[:500]))

    def add_participant(self, s: Session, ticket: Ticket, person: Person) -> None:
        email = person.email.lower()
        if any(p.email == email for p in self.store.participants(s, ticket.id)):  # type: ignore[arg-type]
            return
        s.add(TicketParticipant(ticket_id=ticket.id, email=email, name=person.name))

    # -- shared steps --------------------------------------------------------------------------

    def _add_files(self, s: Session, ticket: Ticket, comment: Comment | None,
                   files: Sequence[NewFile]) -> None:
        for f in files:
            digest = self.blobs.put(f.data)
            s.add(Attachment(ticket_id=ticket.id, comment_id=comment.id if comment else None,
                             filename=f.filename, content_type=f.content_type, size=len(f.data),
                             sha256=digest, inline=f.inline, content_id=f.content_id))

    def _notify_assignee(self, s: Session, ticket: Ticket, comment: Comment, *,
                         reopened: bool) -> None:
        if ticket.assignee_id is None:
            return
        agent = held(s, Agent, ticket.assignee_id)
        ws = held(s, Workspace, ticket.workspace_id)
        if agent is None or ws is None:
            return
        note = " (held for review)" if comment.held_reason else ""
        self._notify(s, ws, ticket, agent, kind="customer_replied",
                     text=f"{ticket.reference}: new reply from {comment.author_email}{note}",
                     context={"customer_name": comment.author_name,
                              "customer_email": comment.author_email,
                              "comment": comment, "reopened": reopened})

    def _notify(self, s: Session, ws: Workspace, ticket: Ticket, agent: Agent | AgentRef, *,
                kind: str, text: str, context: dict) -> None:
        bare.rows(s, _NOTIFY, {
            "workspace_id": ws.id, "agent_id": agent.id, "ticket_id": ticket.id, "kind": kind,
            "text": text, "read": False, "created_at": utcnow()})
        self.mailer.queue(s, ws, kind=f"agent/{kind}", to_name=agent.name,
                          to_address=agent.email, ticket=ticket,
                          context={"agent": agent, **context})
