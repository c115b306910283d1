"""Branding settings (brand name, colour, logo URL, support email) and the assignment mode.

Validated with the API's patterns (portal/api_settings.py); an empty field clears the value
so the portal and mail fall back to the workspace name and the default colour. The page's
sample header previews the brand as the agent types (console.js); without JS it shows the
saved one.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.assignment import MODES
from portal.api_auth import ApiError
from portal.api_settings import COLOR, EMAIL, LOGO
from portal.console.common import Ctx, console_page, redirect, render, services_of
from storage.models import Workspace

FIELDS = {
    "brand_name": (None, ""),
    "primary_color": (COLOR, "a colour like #7c3aed"),
    "logo_url": (LOGO, "an http(s) URL or a path starting with /"),
    "support_email": (EMAIL, "an email address"),
}
LABELS = {"brand_name": "Brand name", "primary_color": "Brand colour", "logo_url": "Logo URL",
          "support_email": "Support email"}


def _checked(ctx: Ctx) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name, (pattern, meaning) in FIELDS.items():
        value = ctx.text(name).strip()
        if len(value) > 500:
            raise ApiError(422, f"{LABELS[name]} is longer than 500 characters.")
        if value and pattern is not None and not pattern.match(value):
            raise ApiError(422, f"{LABELS[name]} must be {meaning}.")
        out[name] = value or None
    mode = ctx.text("assignment_mode")
    if mode:
        if mode not in MODES:
            raise ApiError(422, f"Assignment must be one of: {', '.join(MODES)}.")
        out["assignment_mode"] = mode
    return out


@console_page
async def branding(request: Request, ctx: Ctx) -> Response:
    if request.method == "GET":
        return render(request, "console/settings.html", ctx, nav="settings", ws=ctx.workspace,
                      modes=MODES, done=request.query_params.get("done", ""))
    changes = _checked(ctx)

    def save() -> None:
        with services_of(request).store.tx() as s:
            ws = s.get(Workspace, ctx.workspace.id)
            assert ws is not None
            for name, value in changes.items():
                setattr(ws, name, value)
            s.add(ws)
    await asyncio.to_thread(save)
    return redirect("/console/settings?done=saved")


routes = [Route("/console/settings", branding, methods=["GET", "POST"])]
