"""What an agent does to a ticket, for every channel (API, console, mail): one service layer.

Each verb runs in the caller's transaction, so the change and the mail it causes commit
together; the caller commits, then calls `mailer.wake()`.

Choices, so every channel behaves the same:
- A public reply is mailed to the customer and to every participant as one mail each
  (`customer/agent_reply`, not automatic: a person wrote it), threaded on the ticket's mail
  chain. Participants get the customer's tracking link: they were CC'd on the request and see
  the same public conversation by mail anyway.
- An internal note never causes mail.
- Waiting asks the customer: one mail (`customer/waiting_on_you`) saying the ticket waits on
  them, quoting the agent's latest public reply when that is the newest message. A customer
  reply reopens it (the intake).
- Resolving queues `customer/ticket_resolved` with the CSAT link once per resolution: only on
  the change into Resolved, never when the ticket is rated already (one rating per ticket),
  and not again within CSAT_GUARD of the last one, so status flapping sends one survey.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func
from sqlmodel import Session, select

from gateway.intake import REOPENED_BY_REPLY, NewFile
from gateway.outbound.mailer import Mailer
from storage.blobs import BlobStore
from storage.models import (
    PRIORITIES,
    TICKET_STATUSES,
    Agent,
    Attachment,
    Comment,
    Contact,
    CSATRating,
    InboundMessage,
    Notification,
    OutboundMessage,
    Ticket,
    TicketParticipant,
    Workspace,
    utcnow,
)
from storage.store import Store, held

CSAT_GUARD = timedelta(hours=1)
RESOLVED_KIND = "customer/ticket_resolved"
MAX_REFERENCES = 19  # the root plus the newest; compose keeps at most 20


class ActionError(ValueError):
    """The request cannot be carried out as asked; the message says why."""


@dataclass
class Change:
    """What one status/priority/assignee update did, for the caller to report."""

    status: bool = False
    priority: bool = False
    assignee: bool = False
    csat_mail: bool = False


class AgentActions:
    def __init__(self, store: Store, blobs: BlobStore, mailer: Mailer) -> None:
        self.store = store
        self.blobs = blobs
        self.mailer = mailer

    # -- replies and notes ---------------------------------------------------------------------

    def reply(self, s: Session, ticket: Ticket, agent: Agent, body: str, *,
              files: Sequence[NewFile] = (), internal: bool = False) -> Comment:
        """A public reply (mailed to the customer and participants) or an internal note."""
        body = body.strip("\r\n")
        if not body.strip() and not files:
            raise ActionError("a reply needs a body or a file")
        self._same_workspace(ticket, agent)
        comment = Comment(ticket_id=ticket.id, author_kind="agent", author_name=agent.name,
                          author_email=agent.email, agent_id=agent.id, body=body,
                          internal=internal)
        s.add(comment)
        s.flush()
        stored = self._add_files(s, ticket, comment, files)
        ticket.updated_at = utcnow()
        s.add(ticket)
        if not internal:
            self._mail_reply(s, ticket, agent, comment, stored, files)
        return comment

    def note(self, s: Session, ticket: Ticket, agent: Agent, body: str, *,
             files: Sequence[NewFile] = ()) -> Comment:
        return self.reply(s, ticket, agent, body, files=files, internal=True)

    def accept_held(self, s: Session, ticket: Ticket, agent: Agent, comment: Comment) -> Comment:
        """A reply held for review becomes the customer's public reply, as if it had been
        verified: it reopens a Resolved or Waiting ticket, and its sender joins the ticket's
        participants so their next reply is accepted without review."""
        self._same_workspace(ticket, agent)
        if comment.ticket_id != ticket.id or not comment.held_reason:
            raise ActionError("only a reply held for review can be accepted")
        comment.internal, comment.held_reason = False, None
        comment.author_kind = "customer"
        s.add(comment)
        contact = s.get(Contact, ticket.contact_id)
        if comment.author_email and contact is not None and comment.author_email != contact.email:
            if comment.author_email not in {p.email for p in self.store.participants(s, ticket.id)}:  # type: ignore[arg-type]
                s.add(TicketParticipant(ticket_id=ticket.id, email=comment.author_email,
                                        name=comment.author_name))
        if ticket.status in REOPENED_BY_REPLY:
            ticket.status, ticket.resolved_at = "open", None
        ticket.updated_at = utcnow()
        s.add(ticket)
        return comment

    def _add_files(self, s: Session, ticket: Ticket, comment: Comment,
                   files: Sequence[NewFile]) -> list[Attachment]:
        rows = []
        for f in files:
            row = Attachment(ticket_id=ticket.id, comment_id=comment.id, filename=f.filename,  # type: ignore[arg-type]
                             content_type=f.content_type, size=len(f.data),
                             sha256=self.blobs.put(f.data), inline=f.inline)
            s.add(row)
            rows.append(row)
        s.flush()
        return rows

    def _mail_reply(self, s: Session, ticket: Ticket, agent: Agent, comment: Comment,
                    files: list[Attachment], data: Sequence[NewFile]) -> None:
        """The reply by mail to everyone on the ticket, with its files attached."""
        ws = held(s, Workspace, ticket.workspace_id)
        contact = s.get(Contact, ticket.contact_id)
        assert ws is not None and contact is not None
        in_reply_to, references = self.thread_of(s, ticket)
        tracking = self.mailer.tracking_url(ws, ticket, contact.email)
        history = self._history(s, ticket, contact, comment)
        recipients = [(contact.name, contact.email)]
        recipients += [(p.name, p.email) for p in self.store.participants(s, ticket.id)  # type: ignore[arg-type]
                       if p.email != contact.email]
        for name, address in recipients:
            self.mailer.queue(
                s, ws, kind="customer/agent_reply", to_name=name, to_address=address,
                ticket=ticket, automatic=False, agent_id=agent.id,
                in_reply_to=in_reply_to, references=references,
                files=[(f.filename, f.content_type, f.data) for f in data],
                context={"agent": agent, "comment": comment, "customer_name": name,
                         "tracking_url": tracking, "attachments": files, "history": history})

    def _history(self, s: Session, ticket: Ticket, contact: Contact,
                 current: Comment) -> list[Comment]:
        """The public conversation before this reply, oldest first, the request itself first."""
        opening = Comment(ticket_id=ticket.id, author_kind="customer", author_name=contact.name,
                          author_email=contact.email, body=ticket.description,
                          created_at=ticket.created_at)
        earlier = s.exec(select(Comment).where(
            Comment.ticket_id == ticket.id, Comment.internal == False,  # noqa: E712
            Comment.id != current.id).order_by(Comment.created_at, Comment.id))
        return [opening, *earlier] if ticket.description.strip() else list(earlier)

    def thread_of(self, s: Session, ticket: Ticket) -> tuple[str | None, list[str]]:
        """(In-Reply-To, References) for mail to the customer: the ticket's conversation.

        The reply answers the customer's newest mail when there is one (else our newest mail to
        them); References runs from the first message to that one, so clients thread it.
        """
        inbound = s.exec(select(InboundMessage.received_at, InboundMessage.message_id).where(
            InboundMessage.ticket_id == ticket.id, InboundMessage.message_id.is_not(None),  # type: ignore[union-attr]
            InboundMessage.outcome.in_(("new_ticket", "comment")),  # type: ignore[union-attr]
        )).all()
        outbound = s.exec(select(OutboundMessage.created_at, OutboundMessage.message_id).where(
            OutboundMessage.ticket_id == ticket.id,
            OutboundMessage.kind.startswith("customer/"),  # type: ignore[attr-defined]
        )).all()
        chain = [mid for _, mid in sorted([*inbound, *outbound], key=lambda r: r[0]) if mid]
        chain = list(dict.fromkeys(chain))
        if not chain:
            return None, []
        theirs = [mid for _, mid in sorted(inbound, key=lambda r: r[0]) if mid]
        parent = theirs[-1] if theirs else chain[-1]
        chain = [m for m in chain if m != parent] + [parent]
        if len(chain) > MAX_REFERENCES:
            chain = chain[:1] + chain[-(MAX_REFERENCES - 1):]
        return parent, chain

    # -- status, priority, assignment ----------------------------------------------------------

    def update(self, s: Session, ticket: Ticket, agent: Agent, *, status: str | None = None,
               resolution: str | None = None, priority: str | None = None,
               assignee: Agent | None = None, unassign: bool = False) -> Change:
        """Apply any of the changes at once; values are checked before anything changes."""
        self._same_workspace(ticket, agent)
        if status is not None and status not in TICKET_STATUSES:
            raise ActionError(f"status must be one of: {', '.join(TICKET_STATUSES)}")
        if priority is not None and priority not in PRIORITIES:
            raise ActionError(f"priority must be one of: {', '.join(PRIORITIES)}")
        if assignee is not None:
            self._same_workspace(ticket, assignee)
        change = Change()
        if resolution is not None:
            ticket.resolution = resolution.strip() or None
        if priority is not None and priority != ticket.priority:
            ticket.priority, change.priority = priority, True
        if assignee is not None or unassign:
            change.assignee = self.assign(s, ticket, agent, assignee)
        if status is not None and status != ticket.status:
            change.csat_mail = self._set_status(s, ticket, status, agent)
            change.status = True
        ticket.updated_at = utcnow()
        s.add(ticket)
        return change

    def _set_status(self, s: Session, ticket: Ticket, status: str, agent: Agent) -> bool:
        """Move to `status`; True when that queued the CSAT mail."""
        previous, ticket.status = ticket.status, status
        if status in ("resolved", "closed"):
            if ticket.resolved_at is None or previous not in ("resolved", "closed"):
                ticket.resolved_at = utcnow()
        else:
            ticket.resolved_at = None
        if status == "waiting":
            self._ask_customer(s, ticket, agent)
        return (status == "resolved" and previous != "resolved"
                and self._send_csat(s, ticket, agent))

    def _ask_customer(self, s: Session, ticket: Ticket, agent: Agent) -> None:
        """Waiting means waiting on the customer: tell them, quoting the agent's last question."""
        ws = held(s, Workspace, ticket.workspace_id)
        contact = s.get(Contact, ticket.contact_id)
        assert ws is not None and contact is not None
        latest = s.exec(select(Comment).where(
            Comment.ticket_id == ticket.id, Comment.internal == False)  # noqa: E712
            .order_by(Comment.created_at.desc(), Comment.id.desc())).first()  # type: ignore[union-attr]
        question = latest if latest is not None and latest.author_kind == "agent" else None
        in_reply_to, references = self.thread_of(s, ticket)
        self.mailer.queue(
            s, ws, kind="customer/waiting_on_you", to_name=contact.name,
            to_address=contact.email, ticket=ticket, in_reply_to=in_reply_to,
            references=references, automatic=False, agent_id=agent.id,
            context={"customer_name": contact.name, "agent": agent, "question": question,
                     "tracking_url": self.mailer.tracking_url(ws, ticket, contact.email)})

    def _send_csat(self, s: Session, ticket: Ticket, agent: Agent) -> bool:
        """Not automatic mail: an agent's decision causes it, so the loop cap must not eat it."""
        rated = s.exec(select(func.count()).select_from(CSATRating)
                       .where(CSATRating.ticket_id == ticket.id)).one()
        if rated or self.store.sent_recently(s, ticket.id, RESOLVED_KIND, CSAT_GUARD):  # type: ignore[arg-type]
            return False
        ws = held(s, Workspace, ticket.workspace_id)
        contact = s.get(Contact, ticket.contact_id)
        assert ws is not None and contact is not None
        in_reply_to, references = self.thread_of(s, ticket)
        row = self.mailer.queue(
            s, ws, kind=RESOLVED_KIND, to_name=contact.name, to_address=contact.email,
            ticket=ticket, in_reply_to=in_reply_to, references=references, automatic=False,
            agent_id=agent.id,
            context={"customer_name": contact.name, "resolution": ticket.resolution,
                     "feedback_url": self.mailer.feedback_url(ws, ticket, contact.email),
                     "tracking_url": self.mailer.tracking_url(ws, ticket, contact.email)})
        return row is not None

    def assign(self, s: Session, ticket: Ticket, by: Agent, assignee: Agent | None) -> bool:
        """Give the ticket to `assignee` (None: nobody); they are told unless they did it."""
        if assignee is not None:
            self._same_workspace(ticket, assignee)
        new_id = assignee.id if assignee else None
        if new_id == ticket.assignee_id:
            return False
        ticket.assignee_id = new_id
        s.add(ticket)
        if assignee is not None and assignee.id != by.id:
            self._notify_assigned(s, ticket, assignee, by)
        return True

    def _notify_assigned(self, s: Session, ticket: Ticket, assignee: Agent, by: Agent) -> None:
        ws = held(s, Workspace, ticket.workspace_id)
        contact = s.get(Contact, ticket.contact_id)
        assert ws is not None and contact is not None
        s.add(Notification(workspace_id=ws.id, agent_id=assignee.id, ticket_id=ticket.id,  # type: ignore[arg-type]
                           kind="ticket_assigned",
                           text=f"{ticket.reference} assigned to you by {by.name}: "
                                f"{ticket.subject}"[:500]))
        self.mailer.queue(s, ws, kind="agent/ticket_assigned", to_name=assignee.name,
                          to_address=assignee.email, ticket=ticket,
                          context={"agent": assignee, "customer_name": contact.name,
                                   "customer_email": contact.email})

    def set_availability(self, s: Session, agent: Agent, available: bool) -> None:
        """Away agents are skipped by auto-assignment; their tickets stay theirs."""
        agent.available = available
        s.add(agent)

    @staticmethod
    def _same_workspace(ticket: Ticket, agent: Agent) -> None:
        if agent.workspace_id != ticket.workspace_id:
            raise ActionError("that agent belongs to another workspace")
