"""`workestra inspect`: what the inbound pipeline would decide for a file, storing nothing.

A file has no SMTP envelope. Its sender is taken from `--mail-from`, else from the
Return-Path header a delivering server adds, else from the From address, as a mail sent
straight by its author would have; the output names which (`envelope_sender`).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url
from sqlmodel import Session

from gateway.config import Settings
from gateway.inbound.context import Context
from gateway.inbound.forward import original_sender
from gateway.inbound.mail import InboundMail, ParsedMail
from gateway.inbound.pipeline import INSPECT_DECISIONS, PREPARE, run_steps
from storage.engine import make_engine
from storage.models import Ticket
from storage.store import Store, held


def _store(settings: Settings) -> Store | None:
    """The existing database, if there is one; inspect never creates or migrates one."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").exists():
        return None
    return Store(make_engine(settings.database_url))


def envelope_sender(parsed: ParsedMail, given: str | None) -> tuple[str, str]:
    """The envelope sender to judge the file by, and where it came from."""
    if given is not None:
        return given, "--mail-from"
    path = parsed.header("Return-Path").strip().strip("<>").strip()
    if parsed.header("Return-Path"):
        return path, "Return-Path"
    return (parsed.from_.address if parsed.from_ else ""), "From (no envelope in a file)"


def inspect_bytes(raw: bytes, settings: Settings, store: Store | None,
                  mail_from: str | None = None) -> dict:
    mail = InboundMail(raw=raw)
    run_steps(mail, Context(None, settings), PREPARE)  # parses: the envelope is read from it
    assert mail.parsed is not None
    sender, source = envelope_sender(mail.parsed, mail_from)
    mail.mail_from = sender
    status = None
    if store is None:
        run_steps(mail, Context(None, settings), INSPECT_DECISIONS)
    else:
        with Session(store.engine) as s:  # rolled back on close: nothing is written
            run_steps(mail, Context(store, settings, None, s), INSPECT_DECISIONS)
            ticket = held(s, Ticket, mail.ticket_id) if mail.ticket_id else None
            status = ticket.status if ticket is not None else None
    p = mail.parsed
    assert p is not None
    forwarded = original_sender(p)
    return {
        "from": p.from_.as_dict() if p.from_ else None,
        "to": [a.as_dict() for a in p.to],
        "cc": [a.as_dict() for a in p.cc],
        "subject": p.subject,
        "message_id": p.message_id,
        "in_reply_to": p.in_reply_to[-1] if p.in_reply_to else None,
        "references": p.references,
        "text": p.text,
        "reply_text": mail.reply_text,
        "attachments": [a.as_dict() for a in p.attachments],
        "classification": mail.classification,
        "classification_reasons": mail.rule_hits,
        "original_sender": forwarded.as_dict() if forwarded else None,
        "thread": {"method": mail.thread.method, "ticket": mail.thread.reference,
                   "detail": mail.thread.detail},
        "workspace": mail.workspace_slug,
        "dkim": mail.dkim.summary if mail.dkim else None,
        "sender_known": mail.known_sender,
        "held": mail.hold_reason,
        "envelope_sender": {"address": sender, "from": source},
        "defects": p.defects,
        "decision": decision(mail, store is not None, status),
    }


def decision(mail: InboundMail, with_store: bool, status: str | None = None) -> str:
    """In one line, what the gateway would do with the message: the same choices, in the same
    order, as gateway/inbound/deliver.py makes them (`status` is the threaded ticket's)."""
    if mail.classification != "normal":
        return f"ignored: {mail.classification} ({', '.join(mail.rule_hits)})"
    if with_store and mail.workspace_id is None:
        return "ignored: not addressed to any support address"
    ref = mail.thread.reference
    who = mail.original_sender or mail.sender or (mail.parsed.from_ if mail.parsed else None)
    new = f"new ticket for {who.address if who else 'an unknown sender'}"
    if ref and mail.thread.method == "subject" and with_store and not mail.known_sender:
        return f"{new}: a stranger naming {ref} in the subject is not its reply"
    if ref and status == "closed":
        return f"{new}, linked to {ref}, which is closed"
    if ref:
        if mail.hold_reason:
            return f"held as internal note on {ref}: {mail.hold_reason}"
        return f"reply on {ref} (by {mail.thread.method})"
    return new


def inspect_files(paths: list[str], settings: Settings, mail_from: str | None = None
                  ) -> list[dict]:
    store = _store(settings)
    results = []
    for path in paths:
        try:
            raw = Path(path).read_bytes()
        except OSError as e:
            results.append({"file": path, "error": e.strerror or str(e)})
            continue
        results.append({"file": path, **inspect_bytes(raw, settings, store, mail_from)})
    if store is not None:
        store.engine.dispose()
    return results
