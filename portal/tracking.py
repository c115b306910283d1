"""The tracking page: a ticket shown only to the holder of a valid link, and fresh links on request.

Without a valid token nothing about the ticket is shown, and the page looks the same whether
or not the ticket exists: a reference number guessed or copied is worth nothing. A valid
link is swapped on first view for a signed cookie scoped to this ticket's path, and the
browser is sent to the address without the token, so it leaves no trace in history,
bookmarks or Referer headers. The customer replies here too (with up to 3 files); a reply
goes through the intake, which reopens a Resolved or Waiting ticket and notifies the assignee.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.intake import Person
from gateway.services import Services
from gateway.tokens import TRACKING_MAX_AGE, read_tracking_token
from portal import csrf, page_cache
from portal.pages import not_found, site_of, workspace_of
from portal.ratelimit import limits_of
from portal.submit import MAX_DESCRIPTION, MAX_FILES, csrf_ok, show
from portal.uploads import (
    Accepted,
    Refused,
    accept_parts,
    attachment_response,
    keep_for_retry,
    read_form,
    upload_label,
)
from storage.models import Attachment, Comment, Contact, Ticket, Workspace

LINK_INTERVAL = timedelta(minutes=10)
REFERENCE = re.compile(r"^TKT-(\d{1,9})$", re.IGNORECASE)
SESSION_COOKIE = "wk_ticket"
_SESSION_SALT = "workestra.ticket-session.v1"


def _lookup(services: Services, ws: Workspace, ref: str, s: Session | None = None
            ) -> Ticket | None:
    m = REFERENCE.match(ref)
    return services.store.ticket_by_number(ws.id, int(m.group(1)), s=s) if m else None  # type: ignore[arg-type]


def _check_claim(services: Services, ws: Workspace, ref: str,
                 claim: tuple[int, str] | None, s: Session | None = None) -> Ticket | None:
    if claim is None:
        return None
    ticket = _lookup(services, ws, ref, s)
    if ticket is None or ticket.id != claim[0]:
        return None
    contact = services.store.contact(ticket.contact_id, s=s)
    return ticket if contact is not None and contact.email == claim[1] else None


def authorised_ticket(services: Services, ws: Workspace, ref: str, token: str) -> Ticket | None:
    """The ticket, if the token was signed for exactly this ticket and its customer's address."""
    claim = read_tracking_token(services.settings.secret_key, token) if token else None
    return _check_claim(services, ws, ref, claim)


def _session_signer(services: Services) -> URLSafeTimedSerializer:
    return _signer(services.settings.secret_key)


@lru_cache(maxsize=8)
def _signer(secret: str) -> URLSafeTimedSerializer:
    """Built once per key: building one tests its serializer by dumping a value, a tenth of
    a kept tracking page's interpreter time when done per request (py-spy)."""
    return URLSafeTimedSerializer(secret, salt=_SESSION_SALT)


@lru_cache(maxsize=4096)
def _signed(secret: str, cookie: str) -> tuple[object, int]:
    """A session cookie's value and when it was signed (epoch seconds); raises BadSignature
    (and then nothing is kept) unless our signature holds. Kept per cookie: checking the same
    cookie again was a quarter of a kept tracking page's interpreter time (py-spy). The age
    is checked on every use, by the caller."""
    value, signed = _signer(secret).loads(cookie, return_timestamp=True)
    return value, int(signed.timestamp())


def session_claim(services: Services, cookie: str) -> tuple[int, str] | None:
    """(ticket id, customer address) from a ticket-scoped session cookie we signed, or None."""
    if not cookie:
        return None
    try:
        value, signed_at = _signed(services.settings.secret_key, cookie)
    except (BadSignature, ValueError, TypeError):
        return None
    if not 0 <= int(time.time()) - signed_at <= TRACKING_MAX_AGE:  # as itsdangerous's max_age
        return None
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], int)
            and isinstance(value[1], str)):
        return None
    return value[0], value[1]


def session_ticket(services: Services, ws: Workspace, ref: str, cookie: str,
                   s: Session | None = None) -> Ticket | None:
    """The ticket the ticket-scoped session cookie was issued for, if it is this one."""
    claim = session_claim(services, cookie)
    return _check_claim(services, ws, ref, claim, s) if claim is not None else None


def ticket_path(ws: Workspace, ticket: Ticket) -> str:
    return f"/portal/{ws.slug}/tickets/{ticket.reference}"


@dataclass
class Message:
    author: str
    kind: str  # customer | agent | system
    body: str
    created_at: object
    attachments: list[Attachment] = field(default_factory=list)


@dataclass
class View:
    ticket: Ticket
    contact: Contact | None
    messages: list[Message]


def load_view(services: Services, ticket_id: int) -> View | None:
    """The ticket as its customer may see it (see `_view`), in a read of its own."""
    with services.store.read() as s:
        return _view(s, ticket_id)


def _view(s: Session, ticket_id: int) -> View | None:
    """The description and public comments in order, each with the files that came with it;
    internal notes and their files never."""
    ticket = s.get(Ticket, ticket_id)
    if ticket is None:
        return None
    contact = s.get(Contact, ticket.contact_id)
    comments = list(s.exec(select(Comment).where(
        Comment.ticket_id == ticket_id, Comment.internal == False  # noqa: E712
    ).order_by(Comment.created_at, Comment.id)))
    files = list(s.exec(select(Attachment).where(Attachment.ticket_id == ticket_id)
                        .order_by(Attachment.id)))
    who = (contact.name or contact.email) if contact else "You"
    first = Message(who, "customer", ticket.description, ticket.created_at)
    by_comment: dict[int | None, Message] = {None: first}
    messages = [first]
    for c in comments:
        m = Message(c.author_name or c.author_email or "Support", c.author_kind, c.body,
                    c.created_at)
        by_comment[c.id] = m
        messages.append(m)
    for f in files:
        if f.comment_id in by_comment:
            by_comment[f.comment_id].attachments.append(f)
    return View(ticket, contact, messages)


def cookie_view(services: Services, slug: str, ref: str, cookie: str
                ) -> tuple[Workspace | None, View | None]:
    """The page's whole read in one transaction: the workspace, the ticket the cookie opens
    (if it is this one) and what its customer sees. The page is read far more than written,
    so it costs one thread hop and one database round of queries, not four."""
    with services.store.read() as s:
        ws = services.store.workspace_by_slug(slug, s)
        if ws is None or not REFERENCE.match(ref) or not cookie:
            return ws, None
        ticket = session_ticket(services, ws, ref, cookie, s)
        return ws, (_view(s, ticket.id) if ticket is not None else None)  # type: ignore[arg-type]


async def _workspace_and_reference(request: Request) -> tuple[Workspace | None, str | None]:
    """The workspace of the URL (None if unknown) and its reference (None unless well-formed):
    without both, a 404, in the workspace's branding if it is known."""
    ws = await workspace_of(request, request.path_params["slug"])
    ref = request.path_params["ref"].upper()
    return ws, (ref if REFERENCE.match(ref) else None)


async def _from_cookie(request: Request, ws: Workspace, ref: str) -> Ticket | None:
    services: Services = request.app.state.services
    cookie = request.cookies.get(SESSION_COOKIE, "")
    if not cookie:
        return None
    return await asyncio.to_thread(session_ticket, services, ws, ref, cookie)


def _invalid(request: Request, ws: Workspace, ref: str, *, token: bool,
             error: str | None = None, status: int = 403) -> Response:
    return show(request, "link_invalid.html", ws, status=status, reference=ref,
                token_in_url=token, error=error)


def _fingerprint(services: Services, ticket_id: int, slug: str) -> page_cache.Fingerprint | None:
    if "\x00" in slug:  # PostgreSQL refuses NUL in a text parameter; no slug has one
        return None
    with services.store.reader.connect() as conn:
        return page_cache.read(conn.connection.driver_connection, conn.dialect,  # type: ignore[arg-type]
                               ticket_id, slug)


async def _fingerprint_now(services: Services, cache: page_cache.PageCache, ticket_id: int,
                           slug: str) -> page_cache.Fingerprint | None:
    """The page's fingerprint. On SQLite it is read right here, on the event loop: one indexed
    read of cached pages costs less than the hop to a worker thread (bench/portal.py: 1,470
    -> 2,450 pages/s). That connection never waits for a lock; if the database is busy, the
    read goes to a thread. On PostgreSQL, a network round trip, it always does."""
    store = services.store
    if not store.postgres and "\x00" not in slug:
        try:
            return cache.fingerprints.read(store.quick_read(), store.engine.dialect, ticket_id,
                                           slug)
        except (OperationalError, sqlite3.OperationalError):
            pass
    return await asyncio.to_thread(_fingerprint, services, ticket_id, slug)


async def tracking_page(request: Request) -> Response:
    """The ticket for the holder of its session cookie; served from the page cache while the
    ticket is unchanged (portal/page_cache.py), else read and rendered (and kept)."""
    services: Services = request.app.state.services
    # A kept page's view has no query: not parsing an empty one saved 5% of it (callgrind).
    query = request.query_params if request.scope["query_string"] else None
    if query is not None and query.get("t"):
        return await _swap_token(request)
    slug, ref = request.path_params["slug"], request.path_params["ref"].upper()
    cookie = request.cookies.get(SESSION_COOKIE, "")
    cache: page_cache.PageCache = request.app.state.page_cache
    sent = query is not None and query.get("sent") == "1"
    variant = (site_of(request), sent)  # the logo's address; the "reply sent" notice
    claim = session_claim(services, cookie)
    m = REFERENCE.match(ref)
    found = None
    if claim is not None and m is not None:
        found = await _fingerprint_now(services, cache, claim[0], slug)
        if found is not None and found.email == claim[1] and found.number == int(m.group(1)):
            kept = cache.get((found.key, *variant))
            if kept is not None:
                return _kept_page(request, services, cache, *kept)
        else:
            found = None
    ws, view = await asyncio.to_thread(cookie_view, services, slug, ref, cookie)
    if ws is None or m is None:
        return not_found(request, ws)
    if view is None:
        return _invalid(request, ws, ref, token=False)
    response = await _render(request, ws, view.ticket, sent=sent, view=view)
    if found is not None and response.status_code == 200 and claim is not None:
        if await _fingerprint_now(services, cache, claim[0], slug) == found:  # unchanged meanwhile
            _keep(request, services, cache, response, (found.key, *variant))
    return response


def _keep(request: Request, services: Services, cache: page_cache.PageCache,
          response: Response, key: tuple) -> None:
    """Store a freshly rendered page with its CSRF token taken out (only when the visitor
    already had a CSRF cookie, so the token in it is the one recomputed here)."""
    if not request.cookies.get(csrf.COOKIE):
        return
    token, fresh = csrf.token(request, services.settings.secret_key)
    if fresh is not None:
        return
    headers = [(k, v) for k, v in response.raw_headers
               if k not in (b"content-length", b"set-cookie")]
    cache.put(key, response.body.replace(token.encode(), cache.marker.encode()), headers)


def _kept_page(request: Request, services: Services, cache: page_cache.PageCache,
               body: bytes, headers: list[tuple[bytes, bytes]]) -> Response:
    """A stored page with this visitor's CSRF token put back in (and its cookie set, if new)."""
    token, fresh = csrf.token(request, services.settings.secret_key)
    response = Response(body.replace(cache.marker.encode(), token.encode()))
    response.raw_headers = [*headers, *(h for h in response.raw_headers
                                        if h[0] == b"content-length")]
    csrf.set_cookie(response, fresh, secure=request.scope["scheme"] == "https")
    return response


async def _swap_token(request: Request) -> Response:
    """The link's token becomes a ticket-scoped cookie, and leaves the address bar."""
    services: Services = request.app.state.services
    ws, ref = await _workspace_and_reference(request)
    if ws is None or ref is None:
        return not_found(request, ws)
    ticket = await asyncio.to_thread(authorised_ticket, services, ws, ref,
                                     request.query_params["t"])
    if ticket is None:
        return _invalid(request, ws, ref, token=True)
    contact = await asyncio.to_thread(services.store.contact, ticket.contact_id)
    response = RedirectResponse(ticket_path(ws, ticket), status_code=303)
    response.set_cookie(
        SESSION_COOKIE, _session_signer(services).dumps([ticket.id, contact.email]),  # type: ignore[union-attr]
        path=ticket_path(ws, ticket), httponly=True, samesite="lax",
        secure=request.scope["scheme"] == "https")
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


async def _render(request: Request, ws: Workspace, ticket: Ticket, *, sent: bool = False,
                  values: dict[str, str] | None = None, errors: dict[str, str] | None = None,
                  status: int = 200, view: View | None = None,
                  uploads: Sequence[str] = ()) -> Response:
    services: Services = request.app.state.services
    if view is None:
        view = await asyncio.to_thread(load_view, services, ticket.id)  # type: ignore[arg-type]
    if view is None:
        return not_found(request, ws)
    response = show(request, "tracking.html", ws, status=status, ticket=view.ticket,
                    contact=view.contact, messages=view.messages, sent=sent,
                    values=values or {}, errors=errors or {}, max_files=MAX_FILES,
                    max_description=MAX_DESCRIPTION, base=ticket_path(ws, ticket),
                    uploads=[(t, upload_label(services, t) or "file") for t in uploads])
    response.headers["Cache-Control"] = "private, no-store"
    return response


async def reply(request: Request) -> Response:
    """POST .../reply: the customer's reply from the page, with up to 3 files."""
    services: Services = request.app.state.services
    ws, ref = await _workspace_and_reference(request)
    if ws is None or ref is None:
        return not_found(request, ws)
    ticket = await _from_cookie(request, ws, ref)
    if ticket is None:
        return _invalid(request, ws, ref, token=False)
    limits = limits_of(request)
    if not await limits.hit("reply", limits.client_ip(request)):
        return show(request, "rate_limited.html", ws, status=429, limit=limits.describe("reply"))
    try:
        form = await read_form(request, max_files=MAX_FILES)
    except Refused as e:
        return await _render(request, ws, ticket, errors={"form": e.message}, status=e.status)
    try:
        body = form.get("message").replace("\r\n", "\n").strip()
        uploads = form.getlist("upload")[:MAX_FILES]
        values = {"message": body}
        if not csrf_ok(request, form):
            return await _render(request, ws, ticket, values=values, status=403, errors={
                "form": "This form had expired. Please check your reply and send it again."})
        errors: dict[str, str] = {}
        if not body:
            errors["message"] = "Please write your reply."
        elif len(body) > MAX_DESCRIPTION:
            errors["message"] = (f"Please shorten your reply to {MAX_DESCRIPTION:,} characters "
                                 f"(it has {len(body):,}).")
        if len(uploads) + len(form.files) > MAX_FILES:  # kept ones count, as on the submit form
            errors["attachments"] = f"Please attach at most {MAX_FILES} files."
            got = Accepted(tokens=list(uploads))  # those sent ahead stay
        else:
            got = await accept_parts(services, ws.slug, form.files, uploads)
        if errors or got.errors:  # files that passed stay attached, as on the submit form
            uploads = await keep_for_retry(request, services, ws.slug, got)
            if got.errors:
                errors["attachments"] = " ".join(got.errors)
            return await _render(request, ws, ticket, values=values, errors=errors, status=400,
                                 uploads=uploads)
        files = got.files
    finally:
        form.close()

    def write() -> None:
        with services.store.tx() as s:
            current = s.get(Ticket, ticket.id, populate_existing=True)
            contact = s.get(Contact, current.contact_id)  # type: ignore[union-attr]
            services.intake.add_customer_reply(
                s, current, Person(contact.name, contact.email), body, files=files)  # type: ignore[arg-type,union-attr]

    await asyncio.to_thread(write)
    services.mailer.wake()
    return RedirectResponse(f"{ticket_path(ws, ticket)}?sent=1#latest", status_code=303)


async def attachment(request: Request) -> Response:
    """A file of the ticket, for the holder of its session, as a download only."""
    services: Services = request.app.state.services
    ws, ref = await _workspace_and_reference(request)
    if ws is None or ref is None:
        return not_found(request, ws)
    ticket = await _from_cookie(request, ws, ref)
    raw_id = request.path_params["file_id"]
    if ticket is None or not (raw_id.isascii() and raw_id.isdigit()):  # int("²") raises
        return not_found(request, ws)
    view = await asyncio.to_thread(load_view, services, ticket.id)  # type: ignore[arg-type]
    visible = {a.id: a for m in (view.messages if view else []) for a in m.attachments}
    att = visible.get(int(raw_id))
    if att is None:
        return not_found(request, ws)
    return await asyncio.to_thread(attachment_response, services, att)


async def request_link(request: Request) -> Response:
    """Emails a fresh link to the address on the ticket; the answer never says if it exists."""
    services: Services = request.app.state.services
    ws, ref = await _workspace_and_reference(request)
    if ws is None or ref is None:
        return not_found(request, ws)
    limits = limits_of(request)
    if not await limits.hit("link", limits.client_ip(request)):
        return show(request, "rate_limited.html", ws, status=429, limit=limits.describe("link"))
    try:
        form = await read_form(request, max_files=0)
    except Refused:
        return _invalid(request, ws, ref, token=False, status=400,
                        error="The form could not be read. Please try again.")
    form.close()
    if not csrf_ok(request, form):
        return _invalid(request, ws, ref, token=False,
                        error="This form had expired. Please press the button again.")
    response = show(request, "link_sent.html", ws, reference=ref)
    # Looked up after the answer is sent: its timing says nothing about the ticket either.
    response.background = BackgroundTask(asyncio.to_thread, _queue_link, services, ws, ref)
    return response


def _queue_link(services: Services, ws: Workspace, ref: str) -> None:
    """At most one fresh link per ticket per LINK_INTERVAL, so the form cannot flood anyone."""
    ticket = _lookup(services, ws, ref)
    if ticket is None:
        return
    with services.store.tx() as s:
        contact = services.store.contact(ticket.contact_id, s=s)
        if contact is None or services.store.sent_recently(
                s, ticket.id, "customer/tracking_link", LINK_INTERVAL):  # type: ignore[arg-type]
            return
        services.mailer.queue(
            s, ws, kind="customer/tracking_link", to_name=contact.name, to_address=contact.email,
            ticket=ticket, context={"customer_name": contact.name, "tracking_url":
                                    services.mailer.tracking_url(ws, ticket, contact.email)})
    services.mailer.wake()


routes = [
    Route("/portal/{slug}/tickets/{ref}", tracking_page, methods=["GET"]),
    Route("/portal/{slug}/tickets/{ref}/reply", reply, methods=["POST"]),
    Route("/portal/{slug}/tickets/{ref}/files/{file_id}", attachment, methods=["GET"]),
    Route("/portal/{slug}/tickets/{ref}/link", request_link, methods=["POST"]),
]
