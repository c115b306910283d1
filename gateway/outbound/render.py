"""Renders the email templates (subject, text and HTML parts) with the workspace's branding.

A workspace may override any template file, e.g. only one kind's `.subject.j2`, by putting it
under `DATA_DIR/templates/{slug}/email/`; whatever it does not override comes from the built-in
`templates/email/`. HTML is autoescaped; text parts and subjects are not (they are not HTML), and
a subject is always one line, so a customer's text cannot add headers or break the layout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from jinja2 import (
    BaseLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    select_autoescape,
)

from storage.models import Workspace

DEFAULT_COLOR = "#2563eb"
_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@cache
def template_dir() -> Path:
    """templates/email in a checkout, or the copy installed inside the package (looked up once:
    it does not move while the process runs)."""
    here = Path(__file__).resolve().parents[1]
    for candidate in (here / "_templates" / "email", here.parent / "templates" / "email"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("templates/email not found beside the gateway package")


def override_root(data_dir: Path) -> Path:
    """DATA_DIR/templates: workspace `slug` keeps its own mail templates in `{slug}/email/`."""
    return data_dir / "templates"


def kinds(root: Path | None = None) -> list[str]:
    """Every built-in kind ("customer/ticket_received", ...): one per `.subject.j2` file."""
    base = root or template_dir()
    return sorted(p.relative_to(base).as_posix().removesuffix(".subject.j2")
                  for p in base.rglob("*.subject.j2"))


@dataclass(frozen=True)
class Brand:
    name: str
    color: str
    logo_url: str | None
    support_email: str | None

    @classmethod
    def of(cls, ws: Workspace, base_url: str = "") -> Brand:
        """The workspace's branding, made safe to put in a style or src attribute: a colour that
        is not `#rgb`/`#rrggbb` falls back to the default, a site-relative logo is made absolute
        for mail clients, and a logo that is not http(s) is dropped."""
        color = ws.color if _COLOR.match(ws.color or "") else DEFAULT_COLOR
        logo = ws.logo_url
        if logo and logo.startswith("/") and not logo.startswith("//"):
            logo = base_url + logo
        if logo and not logo.lower().startswith(("https://", "http://")):
            logo = None
        return cls(ws.display_name, color, logo, ws.support_email)

    @property
    def ink(self) -> str:
        """Text colour on the brand colour: white on dark brands, near-black on light ones."""
        hex_ = self.color.lstrip("#") if _COLOR.match(self.color) else DEFAULT_COLOR[1:]
        if len(hex_) == 3:
            hex_ = "".join(c * 2 for c in hex_)
        r, g, b = (int(hex_[i:i + 2], 16) for i in (0, 2, 4))
        return "#111827" if 0.299 * r + 0.587 * g + 0.114 * b > 160 else "#ffffff"


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def one_line(value: str) -> str:
    """CR, LF, tabs and runs of spaces folded to single spaces: a subject is one header line."""
    return " ".join(value.split())


class _Layered(BaseLoader):
    """The first folder holding a template wins. A file later added to an earlier folder (a new
    override) or removed from it takes effect on the next render, without a restart."""

    def __init__(self, roots: tuple[str, ...]) -> None:
        self.roots = [Path(r) for r in roots]
        self.loaders = [FileSystemLoader(r) for r in roots]

    def get_source(self, environment: Environment, template: str):
        for i, loader in enumerate(self.loaders):
            try:
                source, filename, uptodate = loader.get_source(environment, template)
            except TemplateNotFound:
                continue
            earlier = [root / template for root in self.roots[:i]]

            def fresh(uptodate=uptodate, earlier=earlier) -> bool:
                return bool(uptodate is None or uptodate()) and not any(
                    p.is_file() for p in earlier)

            return source, filename, fresh
        raise TemplateNotFound(template)


def quote(text: str) -> str:
    """Plain-text quoting of an earlier message, "> " before every line."""
    return "\n".join(f"> {line}" if line.strip() else ">" for line in str(text).splitlines())


@cache
def _environment(*roots: str) -> Environment:
    env = Environment(
        loader=_Layered(roots),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["quote"] = quote
    return env


class Renderer:
    """Renders kinds for workspaces, looking in `override_root/{slug}/email/` first."""

    def __init__(self, override_root: Path | None = None, *, root: Path | None = None) -> None:
        self.override_root = override_root
        self.root = root or template_dir()

    def override_dir(self, workspace: str) -> Path | None:
        """Where `workspace` keeps its own templates; None for a slug that is not a plain name."""
        if self.override_root is None or not _SLUG.match(workspace):
            return None
        return self.override_root / workspace / "email"

    def environment(self, workspace: str | None = None) -> Environment:
        roots = [str(self.root)]
        own = self.override_dir(workspace) if workspace else None
        if own is not None:
            roots.insert(0, str(own))
        return _environment(*roots)

    def render(self, kind: str, context: dict, *, workspace: str | None = None) -> Rendered:
        """Render `kind` (e.g. "customer/ticket_received") from its three template files."""
        env = self.environment(workspace)
        subject = one_line(env.get_template(f"{kind}.subject.j2").render(context))
        context = {**context, "subject": subject}
        return Rendered(
            subject=subject,
            text=env.get_template(f"{kind}.txt.j2").render(context),
            html=env.get_template(f"{kind}.html.j2").render(context),
        )


def render(kind: str, context: dict, *, root: Path | None = None,
           override_root: Path | None = None, workspace: str | None = None) -> Rendered:
    """Render `kind` with the built-in templates, or a workspace's overrides when both
    `override_root` (DATA_DIR/templates) and `workspace` (its slug) are given."""
    return Renderer(override_root, root=root).render(kind, context, workspace=workspace)
