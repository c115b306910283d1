"""The inbound pipeline: its steps as data, and the driver that gives each message one outcome.

Pure work on the bytes (PREPARE) runs first, outside any transaction. The decisions (STEPS)
run in one transaction: the ticket or comment, the mail it causes and the message's recorded
outcome commit together. If a step raises, the transaction rolls back and the message is
recorded as failed with the error, its raw bytes still kept for a replay; if the database
itself is away, the message stays pending and the processor tries again.
"""

from __future__ import annotations

import errno
import logging
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager

from sqlalchemy.exc import OperationalError

from gateway import logs
from gateway.config import Settings
from gateway.inbound.authorise import authorise, check_dkim, note_signers
from gateway.inbound.bounce import bounce
from gateway.inbound.classify import classify
from gateway.inbound.context import Context
from gateway.inbound.dedupe import dedupe
from gateway.inbound.deliver import deliver
from gateway.inbound.dkim_verify import DnsTxt
from gateway.inbound.forward import original_sender
from gateway.inbound.gate import gate
from gateway.inbound.mail import InboundMail, Stop
from gateway.inbound.parse import parse
from gateway.inbound.reply_text import reply_text
from gateway.inbound.route import require_workspace, route
from gateway.inbound.thread import thread
from gateway.intake import Intake
from gateway.outbound.compose import LOOP_HEADER
from gateway.tokens import loop_marker
from storage.blobs import BlobStore
from storage.models import InboundMessage, utcnow
from storage.store import Store

log = logging.getLogger("workestra.inbound")
# A handled message's bytes stay in its row up to this size: most mail, kept without the file
# writes and fsyncs a blob costs. Larger ones move to the blob store, as do failures' bytes.
ROW_RAW_MAX = 256 * 1024
Step = Callable[[InboundMail, Context], None]


def unavailable(e: BaseException) -> bool:
    """The store or the disk is away for now (not the message's fault): retry, don't record.

    A full disk while a blob is written must leave the message pending, never `failed`."""
    return isinstance(e, OperationalError) or (
        isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS))


def parse_step(mail: InboundMail, ctx: Context) -> None:
    mail.parsed = parse(mail.raw)


def classify_step(mail: InboundMail, ctx: Context) -> None:
    own = ctx.support_addresses()
    mail.classification, mail.rule_hits = classify(
        mail.parsed, own_addresses=own,  # type: ignore[arg-type]
        is_own_message_id=(lambda mid: ctx.store.is_own_message_id(mid, s=ctx.s))
        if ctx.store else (lambda _: False),
        loop_header=LOOP_HEADER, loop_value=loop_marker(ctx.settings.secret_key))


def reply_text_step(mail: InboundMail, ctx: Context) -> None:
    """The new words of a reply: quotes and signatures removed."""
    assert mail.parsed is not None
    mail.reply_text = reply_text(mail.parsed)


def forward_step(mail: InboundMail, ctx: Context) -> None:
    """A forwarded customer mail opens the ticket for its original sender, if an agent forwarded."""
    if mail.parsed is not None and mail.ticket_id is None and _from_own_side(mail, ctx):
        mail.original_sender = original_sender(mail.parsed)


def _from_own_side(mail: InboundMail, ctx: Context) -> bool:
    """Only an agent's or support inbox's forward speaks for someone else's mail."""
    if mail.sender is None:
        return False
    if ctx.store is None or ctx.s is None or mail.workspace_id is None:
        return True  # a dry run shows what a forward from an agent would do
    sender = mail.sender.address
    return (sender in ctx.support_addresses(mail.workspace_id)
            or sender.lower() in ctx.agent_emails(mail.workspace_id))


# Pure work on the bytes, done before the transaction so the database is never held by it.
# DKIM first: its copies of the message are freed before parsing adds its own.
PREPARE: tuple[tuple[str, Step], ...] = (
    ("dkim", check_dkim),
    ("parse", parse_step),
    ("reply-text", reply_text_step),
)
# Decisions against the store, in the one transaction that also records the outcome.
STEPS: tuple[tuple[str, Step], ...] = (
    ("classify", classify_step),
    ("route", route),
    ("require-workspace", require_workspace),
    ("dedupe", dedupe),
    ("signers", note_signers),
    ("thread", thread),
    ("bounce", bounce),
    ("gate", gate),
    ("forward", forward_step),
    ("authorise", authorise),
    ("deliver", deliver),
)
# What `workestra inspect` decides with, after PREPARE: every decision, nothing stored.
INSPECT_DECISIONS = tuple((n, f) for n, f in STEPS if n in
                          ("classify", "route", "thread", "forward", "authorise"))


def run_steps(mail: InboundMail, ctx: Context, steps=STEPS) -> InboundMail:
    for name, step in steps:
        log.debug("inbound %s: %s", mail.inbound_id, name)
        step(mail, ctx)
    return mail


class Pipeline:
    def __init__(self, settings: Settings, store: Store, blobs: BlobStore,
                 intake: Intake, steps: tuple[tuple[str, Step], ...] = STEPS,
                 prepare: tuple[tuple[str, Step], ...] = PREPARE,
                 dns_txt: DnsTxt | None = None, min_turn: float = 0.02) -> None:
        self.dns_txt = dns_txt
        self.min_turn = min_turn
        self.prepare = prepare
        self.steps = steps
        self.settings = settings
        self.store = store
        self.blobs = blobs
        self.intake = intake

    def process(self, inbound_id: int) -> InboundMail | None:
        """Handle one spooled message to its outcome; None if it already has one."""
        done = self.process_batch([inbound_id])
        return done[0] if done else None

    def process_batch(self, inbound_ids: list[int]) -> list[InboundMail]:
        """Handle several spooled messages in one transaction: one commit (one fsync) covers
        the batch, as the spool's group commit does on the way in.

        On SQLite, once it has held the database for `min_turn` seconds, it commits early
        when another writer waits, and goes on in a new transaction: a sender waits for its
        `250` behind a few messages, not fifty (and the spool's next commit takes in all
        that came meanwhile). A message whose steps raise spoils nothing else: the
        transaction is rolled back, the message is recorded as `failed` with the error (its
        raw bytes kept) in one of its own, and the others of the rolled-back transaction are
        read again and go on. (No savepoint per message: they were a sixth of the batch's
        statements, and a failure is rare.) A database or disk that is away (see
        `unavailable`) is raised to the caller, and the messages not yet committed stay
        pending for a later pass.
        """
        small = self.store.received(inbound_ids, up_to_size=ROW_RAW_MAX)  # one read for most
        prepared = [m for m in (self._prepare(i, small.get(i)) for i in inbound_ids)
                    if m is not None]
        if not prepared:
            return []
        done: list[InboundMail] = []
        waiting = deque(prepared)
        while waiting:
            decided: list[InboundMail] = []  # in this transaction, not yet committed
            try:
                with self.store.tx() as s:
                    self._decide_some(s, waiting, decided)
            except _Failed as failed:
                self._fail_alone(failed.mail, failed.error)
                done.append(failed.mail)
                again = (self._prepare(m.inbound_id) for m in decided)  # type: ignore[arg-type]
                waiting.extendleft(reversed([m for m in again if m is not None]))
                continue
            done.extend(decided)
        order = {inbound_id: n for n, inbound_id in enumerate(inbound_ids)}
        done.sort(key=lambda m: order[m.inbound_id])  # as they came, retried ones included
        self.intake.mailer.wake()
        for mail in done:
            with _ids(mail):
                log.info("inbound %s: %s (%s)", mail.inbound_id, mail.outcome, mail.reason,
                         extra={"fields": {"outcome": mail.outcome, "ticket": mail.ticket_id}})
        return done

    def _decide_some(self, s, waiting: deque[tuple[InboundMail, str | None]],
                     decided: list[InboundMail]) -> None:
        """Decides waiting messages in this transaction until none is left, or another writer
        has waited long enough; raises _Failed for a message whose steps raise."""
        began = time.monotonic()
        ctx = Context(self.store, self.settings, self.intake, s, self.dns_txt)
        while waiting:
            mail, error = waiting.popleft()
            try:
                with _ids(mail):
                    if self._decide(s, ctx, mail, error):
                        decided.append(mail)
            except Exception as e:  # a bug or bad data: keep the raw bytes, say so
                if unavailable(e):
                    raise
                log.exception("inbound %s failed", mail.inbound_id)
                raise _Failed(mail, f"{type(e).__name__}: {e}") from e
            if time.monotonic() - began >= self.min_turn and self.store.writers_waiting():
                return  # commit now: another writer (a sender's 250) waits its turn

    def _fail_alone(self, mail: InboundMail, error: str) -> None:
        """Records the failure in a transaction of its own, after the batch's rolled back."""
        mail.ticket_id = None  # whatever its steps made was rolled back with them
        with _ids(mail), self.store.tx() as s:
            self._record_failure(s, mail, error)

    def _prepare(self, inbound_id: int, row: InboundMessage | None = None
                 ) -> tuple[InboundMail, str | None] | None:
        """The pure work on the bytes, before any lock is taken; None if already handled."""
        with logs.bound(inbound=inbound_id):
            return self._prepare_one(inbound_id, row or self.store.inbound(inbound_id))

    def _prepare_one(self, inbound_id: int, row: InboundMessage | None
                     ) -> tuple[InboundMail, str | None] | None:
        if row is None or row.state != "received":
            return None
        mail = InboundMail(raw=b"", mail_from=row.mail_from,
                           rcpt_tos=[r for r in row.rcpt_tos.split(",") if r],
                           inbound_id=inbound_id)
        try:
            mail.raw = row.raw if row.raw is not None else self.blobs.get(row.raw_sha256)
            if len(mail.raw) > ROW_RAW_MAX:
                self.blobs.put(mail.raw)  # fsynced now, so the transaction only clears the column
            run_steps(mail, Context(None, self.settings, dns_txt=self.dns_txt), self.prepare)
        except Exception as e:
            if unavailable(e):
                raise
            log.exception("inbound %s could not be read", inbound_id)
            return mail, f"{type(e).__name__}: {e}"
        return mail, None

    def _decide(self, s, ctx: Context, mail: InboundMail, error: str | None) -> bool:
        row = self.store.lock_inbound(s, mail.inbound_id)  # type: ignore[arg-type]
        if row is None:
            return False  # another worker finished it meanwhile
        if error is not None:
            self._record_failure(s, mail, error)
            return True
        try:
            run_steps(mail, ctx, self.steps)
        except Stop as stop:
            mail.outcome, mail.reason = stop.outcome, stop.reason
        values = _outcome(mail)
        if len(mail.raw) > ROW_RAW_MAX:
            values["raw"] = None  # the bytes are in the blob store (see _prepare)
        self.store.finish_inbound(s, mail.inbound_id, values)  # type: ignore[arg-type]
        return True

    def _record_failure(self, s, mail: InboundMail, error: str) -> None:
        row = self.store.lock_inbound(s, mail.inbound_id)  # type: ignore[arg-type]
        if row is None:
            return
        values: dict = {}
        if row.has_raw:
            self.blobs.put(self.store.spooled_raw(s, row.id) or b"")
            values["raw"] = None
        mail.outcome, mail.reason = "failed", error[:2000]
        values.update(state="done", outcome="failed", reason=mail.reason,
                      processed_at=utcnow())
        self.store.finish_inbound(s, row.id, values)


class _Failed(Exception):
    """A message's steps raised: its transaction is rolled back, and it fails alone."""

    def __init__(self, mail: InboundMail, error: str) -> None:
        super().__init__(error)
        self.mail, self.error = mail, error


def _ids(mail: InboundMail) -> AbstractContextManager[None]:
    """Log lines about this message carry its spool id and Message-ID."""
    p = mail.parsed
    return logs.bound(inbound=mail.inbound_id, message_id=p.message_id if p else None)


def _outcome(mail: InboundMail) -> dict:
    """The row's columns that record what became of the message."""
    p = mail.parsed
    return {"state": "done", "outcome": mail.outcome or "failed",
            "reason": mail.reason or "no step gave an outcome",
            "message_id": p.message_id if p else None, "workspace_id": mail.workspace_id,
            "classification": mail.classification, "thread_method": mail.thread.method,
            "dkim": mail.dkim.summary[:250] if mail.dkim else None,
            "ticket_id": mail.ticket_id, "processed_at": utcnow()}
