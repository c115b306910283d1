"""Renders the email templates (subject, text and HTML parts) with the workspace's branding."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from storage.models import Workspace


def template_dir() -> Path:
    """templates/email in a checkout, or the copy installed inside the package."""
    here = Path(__file__).resolve().parents[1]
    for candidate in (here / "_templates" / "email", here.parent / "templates" / "email"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("templates/email not found beside the gateway package")


@dataclass(frozen=True)
class Brand:
    name: str
    color: str
    logo_url: str | None
    support_email: str | None

    @classmethod
    def of(cls, ws: Workspace, base_url: str = "") -> Brand:
        """The workspace's branding; a site-relative logo is made absolute for mail clients."""
        logo = ws.logo_url
        if logo and logo.startswith("/"):
            logo = base_url + logo
        return cls(ws.display_name, ws.color, logo, ws.support_email)


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@cache
def _environment(root: str) -> Environment:
    return Environment(
        loader=FileSystemLoader(root),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def render(kind: str, context: dict, *, root: Path | None = None) -> Rendered:
    """Render `kind` (e.g. "customer/ticket_received") from its three template files."""
    env = _environment(str(root or template_dir()))
    subject = " ".join(env.get_template(f"{kind}.subject.j2").render(context).split())
    context = {**context, "subject": subject}
    return Rendered(
        subject=subject,
        text=env.get_template(f"{kind}.txt.j2").render(context),
        html=env.get_template(f"{kind}.html.j2").render(context),
    )
