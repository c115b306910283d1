"""Seeds the demo workspace `acme` (idempotent), so `serve --demo` works out of the box."""

from __future__ import annotations

from sqlmodel import select

from storage.models import Agent, KBArticle, Workspace
from storage.store import Store

LOGO = "/static/acme-logo.svg"  # served by the portal; made absolute in mail
SUPPORT = "support@acme.test"  # the one address mail to which becomes acme's tickets
OLD_SUPPORT_EMAIL = "help@acme.test"  # what earlier demos showed; the gateway refuses it
AGENTS = (("Alex Agent", "alex@acme.test"), ("Sam Support", "sam@acme.test"))
ARTICLES = (
    ("How to reset your password",
     "Open the sign-in page, choose 'Forgot password' and follow the link we email you. "
     "The link works for one hour."),
    ("Updating your billing details",
     "Go to Settings, then Billing, and choose 'Update card'. Changes apply to the next invoice."),
    ("Exporting your data",
     "Settings, then Data, then 'Export'. We email you a download link when the export is ready."),
    ("Inviting teammates",
     "Open Team, choose 'Invite', and enter their email addresses. Invitations expire in 7 days."),
    ("Troubleshooting login problems",
     "Clear your browser cookies, check that Caps Lock is off, then reset your password."),
)


def seed_demo(store: Store) -> Workspace:
    with store.tx() as s:
        ws = s.exec(select(Workspace).where(Workspace.slug == "acme")).first()
        if ws is None:
            ws = Workspace(slug="acme", name="Acme", brand_name="Acme Support",
                           primary_color="#7c3aed", support_email=SUPPORT, logo_url=LOGO)
            s.add(ws)
            s.flush()
        elif ws.support_email == OLD_SUPPORT_EMAIL:  # a demo seeded before: pages said write here
            ws.support_email = SUPPORT
            s.add(ws)
        store.add_support_address(s, ws.id, SUPPORT)  # type: ignore[arg-type]
        for name, email in AGENTS:
            if store.agent_by_email(s, ws.id, email) is None:  # type: ignore[arg-type]
                s.add(Agent(workspace_id=ws.id, name=name, email=email, available=True))  # type: ignore[arg-type]
        have = set(s.exec(select(KBArticle.title).where(KBArticle.workspace_id == ws.id)))
        for title, body in ARTICLES:
            if title not in have:
                s.add(KBArticle(workspace_id=ws.id, title=title, body=body, published=True,  # type: ignore[arg-type]
                                visibility="public"))
        return ws
