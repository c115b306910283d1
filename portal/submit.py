"""The submit form `/portal/{slug}/submit` and its confirmation page.

Works without JavaScript (a plain multipart form); portal.js adds the character counter and
knowledge-base deflection. Every error is shown next to its field and the form comes back
with everything typed; files that passed their checks are kept (as signed upload tokens), so
they need not be chosen again. `?embed=1` renders without the page chrome and may be framed
by any site; every other portal page may be framed only by the portal itself.
"""

from __future__ import annotations

import asyncio
import math
import re
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.intake import NewFile, Person, TicketRequest
from gateway.services import Services
from portal import csrf
from portal.kb_search import log_event, valid_session
from portal.pages import CSP, not_found, page, workspace_of
from portal.ratelimit import limits_of
from portal.uploads import (
    Accepted,
    Form,
    Refused,
    accept_parts,
    keep_for_retry,
    read_form,
    upload_label,
)
from storage.models import Workspace

TYPES = ("Support Request", "General Inquiry", "Bug Report", "Feature Request")
MAX_FILES = 3
MAX_DESCRIPTION = 5000
HONEYPOT = "website"
_EMAIL = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$")


def is_embed(request: Request, form: Form | None = None) -> bool:
    flag = form.get("embed") if form is not None else request.query_params.get("embed")
    return flag == "1"


def show(request: Request, template: str, ws: Workspace | None, *, embed: bool = False,
         status: int = 200, token_in_url: bool = False, **context) -> Response:
    """page() plus what every form page needs: a CSRF token (and its cookie), and the framing
    rule: anyone may frame an embed, only the portal itself may frame anything else."""
    services: Services = request.app.state.services
    field, fresh = csrf.token(request, services.settings.secret_key)
    response = page(request, template, workspace=ws, status=status, token_in_url=token_in_url,
                    embed=embed, csrf_field=csrf.FIELD, csrf_token=field, **context)
    ancestors = "*" if embed else "'self'"
    response.headers["Content-Security-Policy"] = f"{CSP}; frame-ancestors {ancestors}"
    if not embed:
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
    csrf.set_cookie(response, fresh, secure=request.url.scheme == "https")
    return response


def csrf_ok(request: Request, form: Form) -> bool:
    """The signed double-submit check; inside a frame on another site the browser withholds
    our SameSite cookie, so an embedded form is accepted instead when the browser says the
    POST came from our own origin (Origin and Sec-Fetch-Site, which no other page can forge)."""
    services: Services = request.app.state.services
    if csrf.valid(request, services.settings.secret_key, form.get(csrf.FIELD)):
        return True
    if not is_embed(request, form):
        return False
    origin = request.headers.get("origin", "")
    site = request.headers.get("sec-fetch-site", "")
    own = f"{request.url.scheme}://{request.url.netloc}"
    return bool(origin) and origin == own and site == "same-origin" and bool(
        urlsplit(origin).netloc)


async def _workspace(request: Request) -> Workspace | None:
    return await workspace_of(request, request.path_params["slug"])


def _form_page(request: Request, ws: Workspace, *, embed: bool, values: dict[str, str],
               errors: dict[str, str], uploads: list[str], status: int = 200,
               limited: dict | None = None) -> Response:
    services: Services = request.app.state.services
    kept = [(t, upload_label(services, t) or "file") for t in uploads]
    return show(request, "submit.html", ws, embed=embed, status=status, values=values,
                errors=errors, types=TYPES, uploads=kept, max_files=MAX_FILES,
                max_description=MAX_DESCRIPTION, honeypot=HONEYPOT, limited=limited,
                session=values.get("dsid") or secrets.token_urlsafe(12))


async def submit_form(request: Request) -> Response:
    ws = await _workspace(request)
    if ws is None:
        return not_found(request)
    return _form_page(request, ws, embed=is_embed(request), values={"type": TYPES[0]},
                      errors={}, uploads=[])


def _validate(values: dict[str, str]) -> dict[str, str]:
    errors: dict[str, str] = {}
    if not values["name"]:
        errors["name"] = "Please enter your name."
    elif len(values["name"]) > 200:
        errors["name"] = "Please keep your name under 200 characters."
    if not values["email"]:
        errors["email"] = "Please enter your email address."
    elif len(values["email"]) > 254 or not _EMAIL.match(values["email"]):
        errors["email"] = "Please enter a valid email address, like name@example.com."
    if not values["subject"]:
        errors["subject"] = "Please enter a subject."
    elif len(values["subject"]) > 300:
        errors["subject"] = "Please keep the subject under 300 characters."
    if len(values["description"]) > MAX_DESCRIPTION:
        errors["description"] = (f"Please shorten the description to {MAX_DESCRIPTION:,} "
                                 f"characters (it has {len(values['description']):,}).")
    if values["type"] not in TYPES:
        errors["type"] = "Please choose a type of request."
    return errors


async def submit(request: Request) -> Response:
    services: Services = request.app.state.services
    ws = await _workspace(request)
    if ws is None:
        return not_found(request)
    embed = is_embed(request)
    try:
        form = await read_form(request, max_files=MAX_FILES)
    except Refused as e:
        return _form_page(request, ws, embed=embed, values={"type": TYPES[0]},
                          errors={"form": e.message}, uploads=[], status=e.status)
    try:
        return await _submitted(request, services, ws, form)
    finally:
        form.close()


def _wait(seconds: int) -> str:
    if seconds < 60:
        return "in under a minute"
    minutes = math.ceil(seconds / 60)
    if minutes < 90:
        return f"in about {minutes} minute{'s' if minutes > 1 else ''}"
    return f"in about {round(minutes / 60)} hours"


async def _limited(request: Request, ws: Workspace, form: Form, *, ip: str,
                   values: dict[str, str], uploads: list[str]) -> Response:
    """The form again with everything typed (429), and when the customer can send it. Files
    chosen in this form are not stored (that would let an address over its limit fill the
    disk); files sent ahead by portal.js are already stored and stay attached."""
    services: Services = request.app.state.services
    limits = limits_of(request)
    retry = max(1, await limits.retry_after("submit", ip))
    kept = [t for t in uploads if upload_label(services, t) is not None]
    response = _form_page(request, ws, embed=is_embed(request, form), values=values, errors={},
                          uploads=kept, status=429,
                          limited={"limit": limits.describe("submit"), "when": _wait(retry),
                                   "files_lost": bool(form.files)})
    response.headers["Retry-After"] = str(retry)
    return response


async def _submitted(request: Request, services: Services, ws: Workspace,
                     form: Form) -> Response:
    embed = is_embed(request, form)
    values = {k: form.get(k).replace("\r\n", "\n").strip()
              for k in ("name", "email", "subject", "description", "type", "dsid")}
    # Only a bot fills a field no person can see. Not counted against the limit: it opens no
    # ticket and stores nothing, and counting it would let a bot behind a shared address (an
    # office or carrier NAT) use up the people's allowance there, and show the bot a 429
    # instead of the confirmation it takes for success.
    if form.get(HONEYPOT):
        return show(request, "confirmation.html", ws, embed=embed, ticket=None)
    uploads = form.getlist("upload")[:MAX_FILES]
    limits = limits_of(request)
    ip = limits.client_ip(request)
    # The limit counts opened tickets only ("10 ticket submissions per hour"): it is tested
    # here and hit once the ticket is committed, so a form sent back for a mistake or an
    # expired token costs nothing.
    if not await limits.test("submit", ip):
        return await _limited(request, ws, form, ip=ip, values=values, uploads=uploads)
    if not csrf_ok(request, form):
        return _form_page(request, ws, embed=embed, values=values, uploads=uploads, status=403,
                          errors={"form": "This form had expired. Please check it and send "
                                          "it again."})
    errors = _validate(values)
    if len(uploads) + len(form.files) > MAX_FILES:
        errors["attachments"] = f"Please attach at most {MAX_FILES} files."
        got = Accepted(tokens=list(uploads))  # those sent ahead stay
    else:
        got = await accept_parts(services, ws.slug, form.files, uploads)
    if errors or got.errors:
        uploads = await keep_for_retry(request, services, ws.slug, got)
        if got.errors:
            errors["attachments"] = " ".join(got.errors)
        return _form_page(request, ws, embed=embed, values=values, errors=errors,
                          uploads=uploads, status=400)
    ticket, tracking_url = await asyncio.to_thread(_open_ticket, services, ws, values,
                                                   got.files)
    # Counted after the commit, so test-then-hit is not atomic: submissions from one address
    # that pass the test at the same moment all open tickets, overshooting the limit by as
    # many as are in flight together (a few at most), which is accepted for not counting
    # refused forms.
    await limits.hit("submit", ip)
    services.mailer.wake()
    return show(request, "confirmation.html", ws, embed=embed, ticket=ticket,
                tracking_url=tracking_url, token_in_url=True)


def _open_ticket(services: Services, ws: Workspace, values: dict[str, str],
                 files: list[NewFile]):
    """The ticket and its tracking link, committed; submissions that arrive together share
    one transaction (storage/group_commit.py), each still all or nothing."""
    request = services.intake.prepared(TicketRequest(
        workspace_id=ws.id, customer=Person(values["name"], values["email"]),  # type: ignore[arg-type]
        subject=values["subject"], description=values["description"], channel="portal",
        type=values["type"], files=files, workspace=ws))

    def work(s):
        ticket = services.intake.open_ticket(s, request)
        if valid_session(values["dsid"]):
            log_event(s, ws.id, values["dsid"], "submitted")  # type: ignore[arg-type]
        return ticket, services.mailer.tracking_url(ws, ticket, values["email"])

    return services.store.together.run(work)


routes = [
    Route("/portal/{slug}/submit", submit_form, methods=["GET"]),
    Route("/portal/{slug}/submit", submit, methods=["POST"]),
]
