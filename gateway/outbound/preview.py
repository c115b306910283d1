"""`workestra mail preview`: one template rendered with sample data, as a real mail would be.

So a workspace can see its branding and its template overrides before a customer does: the mail
is rendered by the same Renderer (overrides first) and built by the same compose() as the mailer
uses, then written out as `.eml` (open it in a mail client) and `.html` (open it in a browser).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from jinja2 import TemplateNotFound
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import select

from gateway.config import Settings, load_settings
from gateway.outbound.compose import compose, new_message_id
from gateway.outbound.mailer import Mailer
from gateway.outbound.render import Brand, Renderer, kinds, override_root
from gateway.tokens import feedback_token, loop_marker, reply_address
from storage.engine import make_engine
from storage.models import Agent, Attachment, Comment, Contact, Ticket, Workspace, utcnow
from storage.store import Store


class PreviewError(Exception):
    """Something the user asked for does not exist; the message says what does."""


@dataclass(frozen=True)
class Sample:
    """A ticket with a customer, an agent, an agent's reply with one attachment, and history."""

    ticket: Ticket
    contact: Contact
    agent: Agent
    customer_reply: Comment
    agent_reply: Comment
    attachments: list[Attachment]
    history: list[Comment]


def sample(ws: Workspace, agent: Agent | None) -> Sample:
    now = utcnow()
    contact = Contact(id=7, workspace_id=ws.id, email="jane@customer.test",  # type: ignore[arg-type]
                      name="Jane Customer")
    agent = agent or Agent(id=1, workspace_id=ws.id, name="Alex Agent",  # type: ignore[arg-type]
                           email=f"alex@{ws.slug}.invalid")
    ticket = Ticket(id=42, workspace_id=ws.id, number=42, contact_id=7,  # type: ignore[arg-type]
                    subject="Printer is on fire",
                    description="The printer in room 4 is on fire. Again.\nThere is smoke "
                                "everywhere and the fire alarm is going off.",
                    priority="urgent", channel="email", assignee_id=agent.id,
                    resolution="We replaced the fuser unit and the printer is back in service. "
                               "Facilities checked the smoke detectors as well.",
                    created_at=now - timedelta(hours=3))
    opened = Comment(ticket_id=42, author_kind="customer", author_name=contact.name,
                     author_email=contact.email, body=ticket.description,
                     created_at=now - timedelta(hours=3))
    first = Comment(ticket_id=42, author_kind="agent", author_name=agent.name,
                    author_email=agent.email, agent_id=agent.id,
                    body="Please leave the room and pull the fire alarm. We are on our way.",
                    created_at=now - timedelta(hours=2, minutes=50))
    customer_reply = Comment(ticket_id=42, author_kind="customer", author_name=contact.name,
                             author_email=contact.email,
                             body="Everyone is out. The fire brigade is here.\n\n"
                                  "What do we do about the printouts for the 3 pm meeting?",
                             created_at=now - timedelta(hours=2))
    agent_reply = Comment(ticket_id=42, author_kind="agent", author_name=agent.name,
                          author_email=agent.email, agent_id=agent.id,
                          body="Glad everyone is safe. Room 6 has a spare printer; I have moved "
                               "your print queue there.\n\nThe checklist we follow after an "
                               "incident like this one is attached.",
                          created_at=now)
    attachment = Attachment(ticket_id=42, filename="fire-safety-checklist.pdf",
                            content_type="application/pdf", size=48_213, sha256="0" * 64)
    return Sample(ticket, contact, agent, customer_reply, agent_reply, [attachment],
                  [opened, first, customer_reply])


def _context(kind: str, ws: Workspace, s: Sample, settings: Settings, mailer: Mailer) -> dict:
    """What the mailer's callers pass for each kind, plus everything the new kinds need."""
    tracking = mailer.tracking_url(ws, s.ticket, s.contact.email)
    feedback = (f"{settings.public_url}/portal/{ws.slug}/feedback?t="
                + feedback_token(settings.secret_key, s.ticket.id, s.contact.email))  # type: ignore[arg-type]
    customer_side = kind.startswith("customer/")
    return {
        "brand": Brand.of(ws, settings.public_url), "ticket": s.ticket,
        "reference": s.ticket.reference, "agent": s.agent,
        "customer_name": s.contact.name, "customer_email": s.contact.email,
        "comment": s.agent_reply if customer_side else s.customer_reply, "reopened": False,
        "attachments": s.attachments, "history": s.history,
        "tracking_url": tracking, "feedback_url": feedback, "question": s.agent_reply,
    }


def file_stem(kind: str) -> str:
    """customer/agent_reply -> customer-agent-reply"""
    return kind.replace("/", "-").replace("_", "-")


def _resolve_kind(name: str) -> str:
    """Accept `customer/agent_reply` (or its file stem, `customer-agent-reply`)."""
    by_stem = {file_stem(k): k for k in kinds()}
    return by_stem.get(name, name)


def _workspace(store: Store, slug: str) -> tuple[Workspace, Agent | None, str]:
    try:
        with store.read() as s:
            ws = store.workspace_by_slug(slug, s)
            if ws is None:
                slugs = list(s.exec(select(Workspace.slug).order_by(Workspace.slug)))
                raise PreviewError(f"no workspace {slug!r}; workspaces: "
                                   + (", ".join(slugs) or "none"))
            agents = store.agents(s, ws.id)  # type: ignore[arg-type]
            addresses = store.support_addresses(s, ws.id)  # type: ignore[arg-type]
            s.expunge_all()
    except SQLAlchemyError as e:
        raise PreviewError(f"no workspace {slug!r}: the database has none yet "
                           f"({type(e).__name__}); run `workestra migrate` and add one, "
                           "or `workestra serve --demo`") from None
    sender = addresses[0] if addresses else f"support@{ws.slug}.invalid"
    return ws, (agents[0] if agents else None), sender


def preview(kind: str, workspace_slug: str, settings: Settings, out_dir: Path
            ) -> tuple[Path, Path]:
    """Render `kind` for the workspace with sample data; write `<kind-stem>.eml` and `.html`."""
    kind = _resolve_kind(kind)
    engine = make_engine(settings.database_url)
    try:
        store = Store(engine)
        ws, agent, sender = _workspace(store, workspace_slug)
        mailer = Mailer(settings, store)
        data = sample(ws, agent)
        try:
            rendered = Renderer(override_root(settings.data_dir)).render(
                kind, _context(kind, ws, data, settings, mailer), workspace=ws.slug)
        except TemplateNotFound as e:
            raise PreviewError(f"no template {kind!r} ({e.name} is missing); templates: "
                               + ", ".join(kinds())) from None
    finally:
        engine.dispose()
    to_agent = kind.startswith("agent/")
    recipient = data.agent if to_agent else data.contact
    msg = compose(
        rendered,
        from_name=ws.display_name,
        from_address=sender,
        to_name=recipient.name,
        to_address=recipient.email,
        message_id=new_message_id(sender.rpartition("@")[2]),
        loop_marker=loop_marker(settings.secret_key),
        reply_to=reply_address(settings.secret_key, sender, data.ticket.id),  # type: ignore[arg-type]
        automatic=kind != "customer/agent_reply",  # a person wrote that one
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    eml, html = out_dir / f"{file_stem(kind)}.eml", out_dir / f"{file_stem(kind)}.html"
    eml.write_bytes(msg.as_bytes())
    html.write_text(rendered.html, encoding="utf-8")
    return eml, html


def cmd_preview(args: argparse.Namespace) -> int:
    settings = load_settings(data_dir=args.data_dir)
    try:
        paths = preview(args.template, args.workspace, settings, Path(args.out))
    except PreviewError as e:
        print(f"workestra: {e}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `mail preview TEMPLATE --workspace SLUG [--out DIR] [--data-dir DIR]`."""
    mail = subparsers.add_parser("mail", help="outbound mail tools")
    sub = mail.add_subparsers(dest="mail_command", required=True)
    p = sub.add_parser("preview", help="render a mail template with sample data to .eml and .html")
    p.add_argument("template", metavar="TEMPLATE",
                   help="one of: " + ", ".join(kinds()) + " (or a workspace's own)")
    p.add_argument("--workspace", required=True, metavar="SLUG")
    p.add_argument("--out", default=".", metavar="DIR", help="where to write (default .)")
    p.add_argument("--data-dir", help="data directory (default ./data)")
    p.set_defaults(func=cmd_preview)
