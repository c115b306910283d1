"""A kept tracking page is served only to its ticket's customer, and never out of date."""

from __future__ import annotations

import re
import subprocess
import sys
from contextlib import contextmanager

import pytest
from sqlalchemy import event
from sqlmodel import select

from gateway.agent_actions import AgentActions
from gateway.intake import Person
from storage.models import Agent, Attachment, Comment, Contact, Ticket, Workspace
from tests.test_portal_common import client, csrf_of
from tests.test_portal_tracking import _open


@contextmanager
def statements(services):
    """The SQL statements run meanwhile (on the store's engine)."""
    seen: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        seen.append(statement)

    event.listen(services.store.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(services.store.engine, "before_cursor_execute", record)


def viewed(services):
    """A customer's browser that followed its link and so holds the ticket cookie."""
    c = client(services)
    path, url = _open(c)
    assert c.get(url).status_code == 200
    return c, path


def change(services, fn) -> None:
    with services.store.tx() as s:
        ticket = s.exec(select(Ticket)).one()
        agent = s.exec(select(Agent).where(Agent.workspace_id == ticket.workspace_id)).first()
        fn(s, ticket, agent, AgentActions(services.store, services.blobs, services.mailer))


def test_a_second_view_is_served_as_kept(services):
    c, path = viewed(services)
    first = c.get(path).text
    with statements(services) as seen:
        again = c.get(path)
    assert again.status_code == 200 and again.text == first
    # served as kept: no read of the ticket, its comments or files (the one fingerprint
    # query goes straight to the driver, past SQLAlchemy's statement events)
    assert seen == [], seen
    assert again.headers["cache-control"] == "private, no-store"
    assert "frame-ancestors 'self'" in again.headers["content-security-policy"]


def test_every_change_the_customer_may_see_shows_on_the_next_view(services):
    c, path = viewed(services)
    c.get(path)  # kept

    change(services, lambda s, t, a, act: act.reply(s, t, a, "We ordered a new fuser."))
    assert "We ordered a new fuser." in c.get(path).text

    change(services, lambda s, t, a, act: act.reply(s, t, a, "SECRET note", internal=True))
    assert "SECRET" not in c.get(path).text

    # written without touching the ticket's row: the page must not depend on any writer
    # remembering to bump updated_at
    change(services, lambda s, t, a, act: s.add(Comment(
        ticket_id=t.id, author_kind="agent", author_name="Alex", body="Quiet one")))
    assert "Quiet one" in c.get(path).text
    change(services, lambda s, t, a, act: s.add(Attachment(
        ticket_id=t.id, filename="manual.pdf", content_type="application/pdf", size=5,
        sha256="0" * 64)))
    assert "manual.pdf" in c.get(path).text

    def held(s, t, a, act):
        services.intake.hold_reply(s, t, Person("Bob", "bob@elsewhere.test"), "Held words",
                                   "unknown sender")
    change(services, held)
    assert "Held words" not in c.get(path).text

    def accept(s, t, a, act):
        [comment] = s.exec(select(Comment).where(Comment.held_reason.is_not(None))).all()
        act.accept_held(s, t, a, comment)
    change(services, accept)
    assert "Held words" in c.get(path).text

    def resolve(s, t, a, act):
        t.status, t.resolution = "resolved", "Replaced the fuser."
        s.add(t)
    change(services, resolve)
    page = c.get(path).text
    assert "Resolved</span>" in page and "Replaced the fuser." in page

    def rename(s, t, a, act):
        contact = s.get(Contact, t.contact_id)
        contact.name = "Janet Customer"
        s.add(contact)
    change(services, rename)
    assert "Janet Customer" in c.get(path).text

    def rebrand(s, t, a, act):
        ws = s.get(Workspace, t.workspace_id)
        ws.primary_color = "#0f766e"
        s.add(ws)
    change(services, rebrand)
    assert "#0f766e" in c.get(path).text


def test_each_visitor_gets_a_working_csrf_token_of_their_own(services):
    c, path = viewed(services)
    mine = csrf_of(c.get(path).text)
    other = client(services)
    other.cookies.update({k: v for k, v in c.cookies.items() if k == "wk_ticket"})
    first = other.get(path)  # no CSRF cookie yet: one is set, and the page carries its token
    theirs = csrf_of(first.text)
    assert theirs != mine and "wk_csrf=" in first.headers["set-cookie"]
    again = other.get(path)
    assert csrf_of(again.text) == theirs  # same cookie, same token, from the kept page
    r = other.post(f"{path}/reply", data={"csrf_token": theirs, "message": "From my phone"},
                   files=[("x", ("", b""))], follow_redirects=False)
    assert r.status_code == 303
    assert "From my phone" in c.get(path).text


def test_a_kept_page_is_not_shown_for_another_tickets_cookie(services):
    alice, alice_path = viewed(services)
    alice.get(alice_path)  # kept
    bob = client(services)
    bob_path, bob_url = _open(bob)
    assert bob.get(bob_url).status_code == 200
    bob_cookie = bob.cookies.get("wk_ticket")
    thief = client(services)
    thief.cookies.set("wk_ticket", bob_cookie)
    thief.cookies.set("wk_csrf", alice.cookies.get("wk_csrf"))
    r = thief.get(alice_path)
    assert r.status_code == 403 and "Room 4" not in r.text


def test_a_busy_quick_read_falls_back_to_a_thread(services, monkeypatch):
    """On SQLite the fingerprint is read on the event loop with a connection that never
    waits; if that read fails, the page is read as before, not refused."""
    from sqlalchemy.exc import OperationalError

    c, path = viewed(services)
    first = c.get(path).text

    def busy():
        raise OperationalError("SELECT", {}, Exception("database is locked"))

    if not services.store.postgres:
        monkeypatch.setattr(services.store, "quick_read", busy)
    again = c.get(path)
    assert again.status_code == 200 and again.text == first


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # PostgreSQL: no quick read
def test_an_unchanged_database_answers_a_repeat_view_without_the_fingerprint_query(
        services, monkeypatch):
    """On SQLite a kept page asks only whether anything was committed since (data_version);
    a commit from any other connection, here another process's, shows on the next view."""
    from portal import page_cache

    c, path = viewed(services)
    c.get(path)  # kept, and its fingerprint known
    queries: list[int] = []
    real = page_cache.read

    def counted(conn, dialect, ticket_id, slug):
        queries.append(ticket_id)
        return real(conn, dialect, ticket_id, slug)

    with c:  # one event loop thread for every request, as under uvicorn
        first = c.get(path).text  # the fingerprint read on this thread's connection
        monkeypatch.setattr(page_cache, "read", counted)
        assert c.get(path).text == first and c.get(path).text == first and queries == []
        subprocess.run([sys.executable, "-c", (
            "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); "
            "db.execute(\"UPDATE ticket SET subject = 'Toner everywhere'\"); db.commit()"),
            services.store.engine.url.database], check=True)
        assert "Toner everywhere" in c.get(path).text and queries


def test_the_fingerprint_memo_keeps_to_its_size(monkeypatch, tmp_path):
    """Viewing many tickets with no commit between must not hold every fingerprint."""
    import sqlite3

    from portal import page_cache

    queries: list[int] = []
    monkeypatch.setattr(page_cache, "read", lambda conn, dialect, ticket_id, slug: (
        queries.append(ticket_id), page_cache.Fingerprint((ticket_id,), 1, "a@b.test"))[1])
    conn = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    memo = page_cache.Unchanged(most=2)
    for ticket_id in (1, 2, 1, 2):
        memo.read(conn, None, ticket_id, "acme")  # type: ignore[arg-type]
    assert queries == [1, 2]  # the database unchanged: read once each
    memo.read(conn, None, 3, "acme")  # type: ignore[arg-type]  # full: it starts again
    memo.read(conn, None, 1, "acme")  # type: ignore[arg-type]
    assert queries == [1, 2, 3, 1]


def test_the_cache_keeps_to_its_size_dropping_the_least_recently_used():
    from portal.page_cache import PageCache

    cache = PageCache(max_bytes=250)
    for key in "abc":
        cache.put((key,), b"x" * 100, [])
    assert cache.get(("a",)) is None  # 300 bytes would not fit: the oldest went
    assert cache.get(("b",)) is not None  # and is now the most recently used
    cache.put(("d",), b"x" * 100, [])
    assert cache.get(("c",)) is None and cache.get(("b",)) is not None


def test_a_page_kept_for_one_host_is_not_served_for_another(services):
    """The logo's address is made absolute from the site the request came to."""
    with services.store.tx() as s:
        ws = s.exec(select(Workspace).where(Workspace.slug == "acme")).one()
        ws.logo_url = "/static/logo.png"
        s.add(ws)
    c, path = viewed(services)
    first = c.get(path).text  # kept now
    site = re.search(r'<img src="(http://[^/"]+)/static/logo.png"', first).group(1)
    other = c.get(path, headers={"host": "support.acme.example"}).text
    assert '<img src="http://support.acme.example/static/logo.png"' in other
    assert site not in other
