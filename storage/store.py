"""The store verbs: every query the gateway and the portal need, and the atomic ones."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import Engine, bindparam, func, insert, or_, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, select

from storage import bare
from storage.bare import Bare
from storage.blobs import BlobStore
from storage.engine import READ_ONLY, is_postgres
from storage.group_commit import GroupCommit
from storage.models import (
    Agent,
    Attachment,
    Comment,
    Contact,
    DeliveryAttempt,
    InboundMessage,
    OutboundMessage,
    SigningDomain,
    SupportAddress,
    Ticket,
    TicketParticipant,
    Workspace,
    utcnow,
)
from storage.turns import turns_for

_M = TypeVar("_M")
_New = TypeVar("_New", Ticket, Comment)


@dataclass(frozen=True)
class Delivery:
    """What one delivery attempt came to: sent, retry (at retry_at) or failed for good."""

    outbound_id: int
    result: str
    detail: str
    retry_at: datetime | None = None


def held(s: Session, model: type[_M], ident: object) -> _M | None:
    """`s.get`, keeping the object loaded for the rest of the transaction.

    A session's identity map holds unchanged objects weakly: once no one refers to one, the
    next `get` is a SELECT again. A batch of fifty new tickets read its workspace fifty times,
    and a reply read its ticket three times (threading, authorising, delivering)."""
    obj = s.get(model, ident)
    if obj is not None:
        s.info.setdefault("held", {})[(model, ident)] = obj
    return obj


@cache
def _insert_returning_id(model: type) -> tuple[tuple[str, ...], Any]:
    """A model's columns but its id, and its INSERT ... RETURNING id (built once)."""
    table = model.__table__  # type: ignore[attr-defined]
    columns = tuple(c.key for c in table.columns if c.key != "id")
    return columns, bare.insert_of(table, columns, returning_id=True)


def normalise_address(address: str) -> str:
    """Lower-case, and drop a `+tag` from the local part (plus-addressing)."""
    local, _, domain = address.strip().strip("<>").lower().rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}" if local else address.strip().lower()


_OUTBOX = OutboundMessage.__table__  # type: ignore[attr-defined]
# Built once: composing it per mail cost more than running it (it runs for every automatic mail).
_RECENT_AUTOMATIC = Bare(select(func.count()).select_from(
    select(_OUTBOX.c.id).where(
        _OUTBOX.c.rcpt_to == bindparam("rcpt"), _OUTBOX.c.automatic,
        _OUTBOX.c.created_at >= bindparam("since", type_=_OUTBOX.c.created_at.type))
    .limit(bindparam("up_to")).subquery()))

_OWN_MESSAGE_ID = Bare(select(_OUTBOX.c.id).where(_OUTBOX.c.message_id == bindparam("mid"))
                       .limit(1))

_INBOX = InboundMessage.__table__  # type: ignore[attr-defined]
# An earlier message of a workspace with the same Message-ID, or the same bytes (the outcomes
# as equalities: a literal IN list expands at execution, which the bare driver cannot take)
_DUPLICATE = {column: Bare(select(_INBOX.c.id, _INBOX.c.ticket_id).where(
    _INBOX.c.workspace_id == bindparam("ws"), _INBOX.c[column] == bindparam("key"),
    _INBOX.c.state == "done", _INBOX.c.id != bindparam("exclude"),
    or_(*(_INBOX.c.outcome == o for o in ("new_ticket", "comment", "ignored"))))
    .order_by(_INBOX.c.id).limit(1)) for column in ("message_id", "raw_sha256")}
# A spooled row still awaiting its outcome (and whether its bytes are still in it); on
# PostgreSQL locked, skipping a row another worker holds
_AWAITING = select(_INBOX.c.id, _INBOX.c.raw.is_not(None).label("has_raw")).where(
    _INBOX.c.id == bindparam("id"), _INBOX.c.state == "received")
_LOCK_AWAITING = {"sqlite": Bare(_AWAITING),
                  "postgresql": Bare(_AWAITING.with_for_update(skip_locked=True))}
_RAW = select(_INBOX.c.raw).where(_INBOX.c.id == bindparam("id"))
_SIGNS = select(SigningDomain.__table__.c.domain).where(  # type: ignore[attr-defined]
    SigningDomain.__table__.c.domain == bindparam("domain"))  # type: ignore[attr-defined]
# The tickets some Message-IDs belong to: ours, sent from the outbox, or earlier inbound ones
_SENT_IDS = select(_OUTBOX.c.message_id, _OUTBOX.c.ticket_id).where(
    _OUTBOX.c.workspace_id == bindparam("ws"),
    _OUTBOX.c.message_id.in_(bindparam("ids", expanding=True)))
_SEEN_IDS = select(_INBOX.c.message_id, _INBOX.c.ticket_id).where(
    _INBOX.c.workspace_id == bindparam("ws"), _INBOX.c.ticket_id.is_not(None),
    _INBOX.c.message_id.in_(bindparam("ids", expanding=True)))

# Support addresses, the first-added first: asked for every mail queued and every message read
_ADDRESS = SupportAddress.__table__  # type: ignore[attr-defined]
_ALL_ADDRESSES = select(_ADDRESS.c.address).order_by(_ADDRESS.c.id)
_ADDRESSES_OF = _ALL_ADDRESSES.where(_ADDRESS.c.workspace_id == bindparam("ws"))

_WORKSPACE = Workspace.__table__  # type: ignore[attr-defined]
# The number, the assignment state and the address its mail is sent from, in one statement.
# By the parameter, not correlated: SQLite's RETURNING names columns without their table.
_SENDER_OF_WORKSPACE = _ADDRESSES_OF.limit(1).scalar_subquery()
_TAKE_NUMBER = Bare(update(_WORKSPACE).where(_WORKSPACE.c.id == bindparam("ws"))
                .values(ticket_counter=_WORKSPACE.c.ticket_counter + 1)
                .returning(_WORKSPACE.c.ticket_counter, _WORKSPACE.c.assignment_mode,
                           _WORKSPACE.c.last_assigned_agent_id, _SENDER_OF_WORKSPACE))

_CONTACT = Contact.__table__  # type: ignore[attr-defined]
_FIND_CONTACT = Bare(select(_CONTACT.c.id, _CONTACT.c.email, _CONTACT.c.name).where(
    _CONTACT.c.workspace_id == bindparam("ws"), _CONTACT.c.email == bindparam("email")))
_NEW_CONTACT = {dialect.__name__.rpartition(".")[2]: Bare(dialect.insert(_CONTACT).values(
    workspace_id=bindparam("ws"), email=bindparam("email"), name=bindparam("name"),
    created_at=bindparam("now", type_=_CONTACT.c.created_at.type)).on_conflict_do_nothing()
    .returning(_CONTACT.c.id)) for dialect in (postgresql, sqlite)}
_NAME_CONTACT = Bare(update(_CONTACT).where(_CONTACT.c.id == bindparam("contact_id"))
                     .values(name=bindparam("name")))

_AGENT = Agent.__table__  # type: ignore[attr-defined]
_TEAM = (select(_AGENT.c.id, _AGENT.c.name, _AGENT.c.email, _AGENT.c.available)
         .where(_AGENT.c.workspace_id == bindparam("ws")).order_by(_AGENT.c.id))
_PICKED = Bare(update(_WORKSPACE).where(_WORKSPACE.c.id == bindparam("ws"))
               .values(last_assigned_agent_id=bindparam("agent_id")))
_TICKET = Ticket.__table__  # type: ignore[attr-defined]
_TOUCHED = Bare(update(_TICKET).where(_TICKET.c.id == bindparam("ticket_id"))
                .values(updated_at=bindparam("now")))


@cache
def _finish(columns: tuple[str, ...]):
    """UPDATE of these columns of one spooled row, built once per set of columns."""
    return Bare(update(_INBOX).where(_INBOX.c.id == bindparam("inbound_id")).values(
        {c: bindparam(f"new_{c}", type_=_INBOX.c[c].type) for c in columns}))


@dataclass(frozen=True)
class ContactRef:
    """A contact's identity and name: what an intake needs of it, read without the ORM."""

    id: int
    email: str
    name: str


@dataclass(frozen=True)
class AgentRef:
    id: int
    name: str
    email: str


@dataclass(frozen=True)
class Team:
    """A workspace's agents as one transaction first read them."""

    available: list[AgentRef]  # by id: the round robin's order
    emails: set[str]  # everyone's, away or not


@dataclass(frozen=True)
class NumberTaken:
    """A new ticket number, and the workspace's assignment state read under the same lock."""

    number: int
    assignment_mode: str
    last_assigned_agent_id: int | None


class Store:
    """Domain verbs over one engine. Verbs that take `s` run inside the caller's transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.reader = engine.execution_options(**{READ_ONLY: True})
        self.postgres = is_postgres(engine)
        self._turns = None if self.postgres else turns_for(engine.url.database)
        self._quick = threading.local()  # each thread's connection for quick_read
        # Small independent writes (portal submissions) that arrive together commit together.
        self.together = GroupCommit(self.tx, self.turn)

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any error.

        On SQLite, writers take turns (storage/turns.py): each waits on a lock, in this process
        and across processes, and is handed the database the moment it is free."""
        with self.turn(), Session(self.engine, expire_on_commit=False) as s, s.begin():
            yield s

    def turn(self) -> AbstractContextManager:
        """SQLite: this writer's turn at the database (re-entrant). PostgreSQL: nothing to wait
        for here; its rows lock one by one."""
        return nullcontext() if self._turns is None else self._turns

    def writers_waiting(self) -> bool:
        """SQLite: another writer waits for the database, so a long one should commit soon."""
        return self._turns is not None and self._turns.wanted()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction; on SQLite it does not wait for, nor block, writers."""
        with Session(self.reader, expire_on_commit=False) as s, s.begin():
            yield s

    def quick_read(self) -> sqlite3.Connection:
        """SQLite: this thread's own read-only connection, straight from the driver, for a
        point read made on the event loop, where a few cached pages cost less than the hop
        to a worker thread. It never waits for a lock (it raises sqlite3.OperationalError at
        once instead; the caller falls back to a thread) and, in autocommit, holds no
        snapshot once its statement is done. SQLAlchemy's connection, its transaction and
        rollback cost 7k of a kept tracking page's 730k instructions (callgrind)."""
        conn = getattr(self._quick, "conn", None)
        if conn is None:
            database = self.engine.url.database
            if self.postgres or not database or database == ":memory:":
                raise RuntimeError("quick_read is for a SQLite file: PostgreSQL reads go over "
                                   "the network, and :memory: is one connection's own")
            conn = sqlite3.connect(database, timeout=0, isolation_level=None)
            conn.execute("PRAGMA query_only=ON")
            self._quick.conn = conn
        return conn

    @contextmanager
    def _using(self, s: Session | None) -> Iterator[Session]:
        """The caller's session when given (same transaction), else a short read of our own."""
        if s is not None:
            yield s
        else:
            with self.read() as own:
                yield own

    def lock_key(self, s: Session, key: str) -> None:
        """Serialise work on one key (e.g. a Message-ID) across processes, for this transaction.

        SQLite needs nothing: its writers already hold the database lock.
        """
        if self.postgres:
            s.exec(text("SELECT pg_advisory_xact_lock(hashtext(:k))").bindparams(k=key))

    def _insert(self, table):
        return (postgresql if self.postgres else sqlite).insert(table)

    # -- workspaces and addresses -------------------------------------------------------------

    def workspace_by_slug(self, slug: str, s: Session | None = None) -> Workspace | None:
        if "\x00" in slug:  # no slug has one, and PostgreSQL refuses NUL in any text parameter
            return None
        with self._using(s) as s:
            return s.exec(select(Workspace).where(Workspace.slug == slug)).first()

    def workspace(self, workspace_id: int, s: Session | None = None) -> Workspace | None:
        with self._using(s) as s:
            return s.get(Workspace, workspace_id)

    def workspace_for_address(self, address: str, s: Session | None = None) -> Workspace | None:
        """The workspace a support address (plus-tags allowed) belongs to."""
        addr = normalise_address(address)
        with self._using(s) as s:
            return s.exec(
                select(Workspace)
                .join(SupportAddress, SupportAddress.workspace_id == Workspace.id)
                .where(SupportAddress.address == addr)
            ).first()

    def support_addresses(self, s: Session | None = None,
                          workspace_id: int | None = None) -> list[str]:
        """Support addresses (all, or one workspace's), the first-added first: it sends mail."""
        with self._using(s) as s:
            conn = s.connection()
            if workspace_id is None:
                return list(conn.execute(_ALL_ADDRESSES).scalars())
            return list(conn.execute(_ADDRESSES_OF, {"ws": workspace_id}).scalars())

    def add_support_address(self, s: Session, workspace_id: int, address: str) -> None:
        stmt = self._insert(SupportAddress).values(
            workspace_id=workspace_id, address=normalise_address(address))
        s.exec(stmt.on_conflict_do_nothing())

    # -- contacts and numbering ----------------------------------------------------------------

    def upsert_contact(self, s: Session, workspace_id: int, email: str, name: str
                       ) -> ContactRef:
        """The contact for this email in this workspace, created if new (safe under concurrency).

        Plain statements on the transaction's connection: an intake runs this for every new
        ticket, and the ORM's version cost a tenth of a portal submission."""
        email, name = email.strip().lower(), name.strip()
        params = {"ws": workspace_id, "email": email}
        found = bare.first(s, _FIND_CONTACT, params)  # a returning customer: one read
        if found is None:
            new = bare.first(s, _NEW_CONTACT["postgresql" if self.postgres else "sqlite"],
                             {**params, "name": name, "now": utcnow()})
            if new is not None:
                return ContactRef(new.id, email, name)
            found = bare.first(s, _FIND_CONTACT, params)  # another writer's, just now
            assert found is not None
        if name and not found.name:
            bare.rows(s, _NAME_CONTACT, {"contact_id": found.id, "name": name})
            return ContactRef(found.id, found.email, name)
        return ContactRef(found.id, found.email, found.name)

    def add_new(self, s: Session, obj: _New) -> _New:
        """Insert a new row (a ticket, a comment) with one plain statement, then put the object
        in the session as a flush would leave it: persistent, with its id. The unit of work
        cost a tenth of an intake, for a row that is always new and never batched."""
        columns, statement = _insert_returning_id(type(obj))
        obj.id = bare.scalar(  # type: ignore[attr-defined]
            s, statement, {key: getattr(obj, key) for key in columns})
        make_transient_to_detached(obj)
        s.add(obj)
        return obj

    def take_ticket_number(self, s: Session, workspace_id: int) -> NumberTaken:
        """Bump the workspace's counter under its row lock; concurrent callers queue behind it.
        The same statement reads the assignment state, fresh under that lock.

        On PostgreSQL an UPDATE of non-key columns locks the row FOR NO KEY UPDATE, which
        does not wait for the KEY SHARE lock held by a transaction that has inserted rows
        referring to the workspace; FOR UPDATE would, while that transaction waits for our
        bump: a deadlock (found under load by bench/soak.py). On SQLite the BEGIN IMMEDIATE
        transaction already holds the database's write lock."""
        # A plain statement on the transaction's connection: through the ORM, an UPDATE first
        # matches its criteria against every object the session holds (a tenth of a portal
        # submission's interpreter time).
        number, mode, last_agent, sender = bare.rows(s, _TAKE_NUMBER, {"ws": workspace_id})[0]
        s.info.setdefault("sender_address", {})[workspace_id] = sender  # see sender_address
        return NumberTaken(number, mode, last_agent)

    def sender_address(self, s: Session, workspace_id: int) -> str | None:
        """The workspace's first support address, which its mail is sent from (None if it has
        none). Read once per transaction, or not at all after `take_ticket_number`, which
        reads it too: a new ticket's confirmation then costs no statement of its own."""
        known = s.info.setdefault("sender_address", {})
        if workspace_id not in known:
            known[workspace_id] = s.connection().execute(
                _ADDRESSES_OF, {"ws": workspace_id}).scalars().first()
        return known[workspace_id]

    # -- agents --------------------------------------------------------------------------------

    def agents(self, s: Session, workspace_id: int, *, available_only: bool = False) -> list[Agent]:
        q = select(Agent).where(Agent.workspace_id == workspace_id).order_by(Agent.id)
        if available_only:
            q = q.where(Agent.available)
        return list(s.exec(q))

    def team(self, s: Session, workspace_id: int) -> Team:
        """The workspace's agents, read once per transaction in one statement: the assignment
        wants who is available, the loop brake everyone's address (a batch of mail opens many
        tickets, and whoever is away stays away for its moment)."""
        known = s.info.setdefault("team", {})
        if workspace_id not in known:
            rows = list(s.connection().execute(_TEAM, {"ws": workspace_id}))
            known[workspace_id] = Team([AgentRef(r.id, r.name, r.email) for r in rows
                                        if r.available], {r.email for r in rows})
        return known[workspace_id]

    def available_agents(self, s: Session, workspace_id: int) -> list[AgentRef]:
        """The workspace's agents who take new tickets, by id (see `team`)."""
        return self.team(s, workspace_id).available

    def record_pick(self, s: Session, workspace_id: int, agent_id: int) -> None:
        """The agent round robin picked last, for the next pick to start after."""
        bare.rows(s, _PICKED, {"ws": workspace_id, "agent_id": agent_id})

    def agent_by_email(self, s: Session, workspace_id: int, email: str) -> Agent | None:
        return s.exec(select(Agent).where(
            Agent.workspace_id == workspace_id, Agent.email == email.lower())).first()

    # -- tickets -------------------------------------------------------------------------------

    def ticket(self, ticket_id: int, s: Session | None = None) -> Ticket | None:
        with self._using(s) as s:
            return held(s, Ticket, ticket_id)

    def touch_ticket(self, s: Session, ticket: Ticket, now: datetime) -> None:
        """`updated_at = now`, in one plain statement; the object shows it, and is not left
        dirty (the unit of work's flush of a loaded ticket cost more than the statement)."""
        bare.rows(s, _TOUCHED, {"ticket_id": ticket.id, "now": now})
        set_committed_value(ticket, "updated_at", now)

    def ticket_by_number(self, workspace_id: int, number: int,
                         s: Session | None = None) -> Ticket | None:
        with self._using(s) as s:
            return s.exec(select(Ticket).where(
                Ticket.workspace_id == workspace_id, Ticket.number == number)).first()

    def contact(self, contact_id: int, s: Session | None = None) -> Contact | None:
        with self._using(s) as s:
            return held(s, Contact, contact_id)

    def public_comments(self, ticket_id: int) -> list[Comment]:
        with self.read() as s:
            return list(s.exec(select(Comment).where(
                Comment.ticket_id == ticket_id, Comment.internal == False  # noqa: E712
            ).order_by(Comment.created_at, Comment.id)))

    def comments(self, ticket_id: int) -> list[Comment]:
        with self.read() as s:
            return list(s.exec(select(Comment).where(Comment.ticket_id == ticket_id)
                               .order_by(Comment.created_at, Comment.id)))

    def attachments(self, ticket_id: int) -> list[Attachment]:
        with self.read() as s:
            return list(s.exec(select(Attachment).where(Attachment.ticket_id == ticket_id)
                               .order_by(Attachment.id)))

    def tickets(self, workspace_id: int) -> list[Ticket]:
        with self.read() as s:
            return list(s.exec(select(Ticket).where(Ticket.workspace_id == workspace_id)
                               .order_by(Ticket.number)))

    def participants(self, s: Session, ticket_id: int) -> list[TicketParticipant]:
        return list(s.exec(select(TicketParticipant)
                           .where(TicketParticipant.ticket_id == ticket_id)))

    # -- inbound messages ----------------------------------------------------------------------

    def record_inbound(self, *, raw_sha256: str, size: int, mail_from: str,
                       rcpt_tos: Sequence[str], channel: str = "smtp") -> int:
        """Record a spooled message; once this returns, it will be processed even after a crash."""
        with self.tx() as s:
            row = InboundMessage(raw_sha256=raw_sha256, size=size, mail_from=mail_from,
                                 rcpt_tos=",".join(rcpt_tos), channel=channel)
            s.add(row)
            s.flush()
            return row.id  # type: ignore[return-value]

    def inbound(self, inbound_id: int) -> InboundMessage | None:
        with self.read() as s:
            return s.get(InboundMessage, inbound_id)

    def received(self, inbound_ids: Sequence[int], *, up_to_size: int
                 ) -> dict[int, InboundMessage]:
        """Rows still awaiting an outcome, raw bytes included, read together: only those no
        larger than `up_to_size`, so a batch of big mails is never all in memory at once."""
        with self.read() as s:
            rows = s.exec(select(InboundMessage).where(
                InboundMessage.id.in_(inbound_ids),  # type: ignore[union-attr]
                InboundMessage.state == "received", InboundMessage.size <= up_to_size))
            return {r.id: r for r in rows}  # type: ignore[misc]

    def inbound_raw(self, inbound_id: int, blobs: BlobStore) -> bytes:
        """A message's bytes as received: in its row, or in the blob store once moved there."""
        row = self.inbound(inbound_id)
        if row is None:
            raise KeyError(inbound_id)
        return row.raw if row.raw is not None else blobs.get(row.raw_sha256)

    def pending_inbound(self) -> list[int]:
        """Messages received but not yet given an outcome (e.g. after a crash), oldest first."""
        with self.read() as s:
            return list(s.exec(select(InboundMessage.id)
                               .where(InboundMessage.state == "received")
                               .order_by(InboundMessage.id)))

    def lock_inbound(self, s: Session, inbound_id: int) -> Any | None:
        """The row's id and whether its bytes are still in it (`has_raw`), locked for this
        transaction, if it still awaits an outcome; None if not.

        Its spooled bytes are not loaded again: the caller has them, and a 30 MB mail read
        twice is 30 MB more at the peak. Plain statements here and in `finish_inbound`: an
        ORM object, loaded and flushed for every message, cost a tenth of processing one.
        """
        return bare.first(s, _LOCK_AWAITING["postgresql" if self.postgres else "sqlite"],
                          {"id": inbound_id})

    def finish_inbound(self, s: Session, inbound_id: int, values: dict) -> None:
        """Record a spooled message's outcome (state, outcome, reason, ... columns)."""
        bare.rows(s, _finish(tuple(sorted(values))), {
            "inbound_id": inbound_id, **{f"new_{c}": v for c, v in values.items()}})

    def spooled_raw(self, s: Session, inbound_id: int) -> bytes | None:
        """The bytes still kept in a spooled row."""
        return s.connection().execute(_RAW, {"id": inbound_id}).scalar_one_or_none()

    def duplicate_of(self, s: Session, workspace_id: int, key: str, *, by_hash: bool,
                     exclude_id: int) -> Any | None:
        """An earlier message of this workspace with the same Message-ID (or raw hash): its
        id and ticket_id."""
        return bare.first(s, _DUPLICATE["raw_sha256" if by_hash else "message_id"], {
            "ws": workspace_id, "key": key, "exclude": exclude_id})

    def ticket_for_message_ids(self, s: Session, workspace_id: int,
                               message_ids: Iterable[str]) -> tuple[Ticket, str] | None:
        """The ticket one of these Message-IDs (ours or an earlier inbound one) belongs to."""
        ids = [m for m in message_ids if m]
        if not ids:
            return None
        conn, params = s.connection(), {"ws": workspace_id, "ids": ids}
        found = {mid: tid for mid, tid in [*conn.execute(_SEEN_IDS, params),
                                           *conn.execute(_SENT_IDS, params)] if tid is not None}
        for mid in reversed(ids):  # the nearest ancestor first
            if mid in found:
                ticket = held(s, Ticket, found[mid])
                if ticket is not None:
                    return ticket, mid
        return None

    def is_own_message_id(self, message_id: str, s: Session | None = None) -> bool:
        with self._using(s) as s:
            return bare.first(s, _OWN_MESSAGE_ID, {"mid": message_id}) is not None

    # -- sender evidence -----------------------------------------------------------------------

    def note_signing_domains(self, s: Session, domains: Iterable[str]) -> None:
        """Remember domains whose mail arrived DKIM-signed and valid."""
        known = s.info.setdefault("signs", {})
        for domain in sorted(set(domains)):
            stmt = self._insert(SigningDomain).values(domain=domain, last_pass_at=utcnow())
            s.exec(stmt.on_conflict_do_update(index_elements=["domain"],
                                              set_={"last_pass_at": utcnow()}))
            known[domain.lower()] = True

    def signs_mail(self, s: Session, domain: str) -> bool:
        """Whether mail from this domain has arrived DKIM-signed before; asked once per domain
        per transaction (a batch's mail comes from few domains)."""
        domain = domain.lower()
        known = s.info.setdefault("signs", {})
        if domain not in known:
            known[domain] = s.connection().execute(_SIGNS, {"domain": domain}).first() is not None
        return known[domain]

    # -- outbox --------------------------------------------------------------------------------

    def outbound(self, s: Session, outbound_id: int) -> OutboundMessage | None:
        return s.get(OutboundMessage, outbound_id)

    def outbound_by_message_id(self, s: Session, message_id: str) -> OutboundMessage | None:
        return s.exec(select(OutboundMessage)
                      .where(OutboundMessage.message_id == message_id)).first()

    def automatic_mail_count(self, s: Session, rcpt_to: str, within: timedelta,
                             up_to: int) -> int:
        """Automatic mails queued for one address lately, counted no further than `up_to`:
        the loop brake only asks whether the cap is reached, and a busy agent's hour of
        notifications need not be counted row by row on every new one."""
        return bare.scalar(s, _RECENT_AUTOMATIC, {
            "rcpt": rcpt_to.lower(), "since": utcnow() - within, "up_to": up_to})

    def delivery_attempts(self, outbound_id: int) -> list[DeliveryAttempt]:
        with self.read() as s:
            return list(s.exec(select(DeliveryAttempt)
                               .where(DeliveryAttempt.outbound_id == outbound_id)
                               .order_by(DeliveryAttempt.id)))

    def claim_outbound(self, *, limit: int = 20, lease: timedelta = timedelta(minutes=5)
                       ) -> list[OutboundMessage]:
        """Due mails, leased to this worker; with PostgreSQL, workers skip each other's rows."""
        now = utcnow()
        with self.tx() as s:
            q = (select(OutboundMessage)
                 .where(OutboundMessage.state == "queued", OutboundMessage.next_attempt_at <= now)
                 .order_by(OutboundMessage.next_attempt_at, OutboundMessage.id).limit(limit))
            if self.postgres:
                q = q.with_for_update(skip_locked=True)
            rows = list(s.exec(q))
            if rows:  # one statement for the batch; a crashed worker's mail comes due again
                s.exec(update(OutboundMessage)
                       .where(OutboundMessage.id.in_([r.id for r in rows]))  # type: ignore[union-attr]
                       .values(attempts=OutboundMessage.attempts + 1,
                               next_attempt_at=now + lease)
                       .execution_options(synchronize_session=False))
            for row in rows:  # what the rows now hold, without reading them again
                set_committed_value(row, "attempts", row.attempts + 1)
                set_committed_value(row, "next_attempt_at", now + lease)
            return rows

    def record_deliveries(self, results: Iterable[Delivery]) -> None:
        """Each attempt's result, and the mail's new state, for a whole batch in one commit."""
        results = list(results)
        if not results:
            return
        now = utcnow()
        sent = [r.outbound_id for r in results if r.result == "sent"]
        with self.tx() as s:
            if sent:  # the usual case, in one statement
                s.exec(update(OutboundMessage).where(OutboundMessage.id.in_(sent))  # type: ignore[union-attr]
                       .values(state="sent", sent_at=now, last_error=None)
                       .execution_options(synchronize_session=False))
            for r in results:
                if r.result != "sent":
                    s.exec(update(OutboundMessage).where(OutboundMessage.id == r.outbound_id)
                           .values(state="failed" if r.result == "failed" else "queued",
                                   next_attempt_at=r.retry_at, last_error=r.detail))
            s.execute(insert(DeliveryAttempt), [
                {"outbound_id": r.outbound_id, "result": r.result, "detail": r.detail[:2000],
                 "created_at": now} for r in results])

    def outbox(self, workspace_id: int | None = None,
               ticket_id: int | None = None) -> list[OutboundMessage]:
        with self.read() as s:
            q = select(OutboundMessage).order_by(OutboundMessage.id)
            if workspace_id is not None:
                q = q.where(OutboundMessage.workspace_id == workspace_id)
            if ticket_id is not None:
                q = q.where(OutboundMessage.ticket_id == ticket_id)
            return list(s.exec(q))

    def sent_recently(self, s: Session, ticket_id: int, kind: str, within: timedelta) -> bool:
        """Whether a mail of this kind was queued for the ticket in the last `within`."""
        return s.exec(select(func.count()).select_from(OutboundMessage).where(
            OutboundMessage.ticket_id == ticket_id, OutboundMessage.kind == kind,
            OutboundMessage.created_at >= utcnow() - within)).one() > 0

    def inbound_messages(self) -> list[InboundMessage]:
        with self.read() as s:
            return list(s.exec(select(InboundMessage).order_by(InboundMessage.id)))
