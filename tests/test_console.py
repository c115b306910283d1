"""The agents' console through httpx against the real Starlette app (SQLite and PostgreSQL):
login and sessions, CSRF refusal, workspace isolation, and every action an agent takes."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlmodel import select
from starlette.testclient import TestClient

from gateway.credentials import hash_password
from portal.app import create_app
from portal.console.analytics import duration, figures
from storage.models import (
    Agent,
    Attachment,
    Comment,
    CSATRating,
    DeflectionEvent,
    KBArticle,
    Notification,
    Ticket,
    Workspace,
)
from tests.conftest import customer_mail
from tests.test_agent_api import PNG, add_globex
from tests.test_pipeline import deliver

PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


def set_password(services, email: str, password: str = PASSWORD) -> None:
    with services.store.tx() as s:
        for agent in s.exec(select(Agent).where(Agent.email == email)):
            agent.password_hash = hash_password(password)
            s.add(agent)


@pytest.fixture
def app(services):
    """acme (demo: Alex, Sam) and globex (Gina), every agent with a console password."""
    add_globex(services)
    for email in ("alex@acme.test", "sam@acme.test", "gina@globex.test"):
        set_password(services, email)
    return create_app(services)


def client(app) -> TestClient:
    return TestClient(app, follow_redirects=False)


def csrf_of(c: TestClient, path: str = "/console/login") -> str:
    r = c.get(path)
    assert r.status_code == 200, (path, r.status_code)
    return CSRF.search(r.text).group(1)  # type: ignore[union-attr]


def logged_in(app, email: str) -> TestClient:
    c = client(app)
    r = c.post("/console/login", data={"email": email, "password": PASSWORD,
                                       "csrf_token": csrf_of(c)})
    assert r.status_code == 303, r.text
    return c


def mail_ticket(services, subject="Printer is on fire", body="It burns. Room 4.",
                to="support@acme.test") -> Ticket:
    row = deliver(services, customer_mail(subject, body, to=to), rcpt=(to,))
    assert row.outcome == "new_ticket"
    return services.store.ticket(row.ticket_id)


def assign(services, ticket: Ticket, email: str) -> None:
    with services.store.tx() as s:
        t = s.get(Ticket, ticket.id)
        t.assignee_id = s.exec(select(Agent).where(Agent.email == email)).one().id
        s.add(t)


def outbox_kinds(services, ticket: Ticket) -> list[str]:
    return [m.kind for m in services.store.outbox(ticket_id=ticket.id)]


# -- login, sessions, headers ---------------------------------------------------------------------

def test_login_session_and_logout(app):
    c = client(app)
    r = c.get("/console/tickets")
    assert r.status_code == 303 and r.headers["location"] == "/console/login?next=/console/tickets"
    assert c.get("/console/notifications/count").status_code == 401

    token = csrf_of(c)
    r = c.post("/console/login", data={"email": "alex@acme.test", "password": "wrong password",
                                       "csrf_token": token})
    assert r.status_code == 401 and "do not match" in r.text
    r = c.post("/console/login", data={"email": "ALEX@acme.test ", "password": PASSWORD,
                                       "csrf_token": token, "next": "/console/tickets"})
    assert r.status_code == 303 and r.headers["location"] == "/console/tickets"
    cookie = r.headers["set-cookie"]
    assert "wk_console=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Path=/console" in cookie

    page = c.get("/console/")
    assert page.status_code == 200 and "Alex Agent" in page.text
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert "<script>" not in page.text  # no inline script: the CSP would block it anyway

    r = c.post("/console/logout", data={"csrf_token": csrf_of(c, "/console/")})
    assert r.status_code == 303
    assert c.get("/console/").status_code == 303  # the cookie is gone


def test_login_never_redirects_off_site(app):
    c = client(app)
    r = c.post("/console/login", data={"email": "alex@acme.test", "password": PASSWORD,
                                       "csrf_token": csrf_of(c), "next": "//evil.test/x"})
    assert r.headers["location"] == "/console/"


def test_a_forged_or_stale_session_is_refused(app, services):
    c = logged_in(app, "alex@acme.test")
    stolen = c.cookies.get("wk_console")
    forged = client(app)
    forged.cookies.set("wk_console", stolen[:-3] + "AAA", path="/console")
    assert forged.get("/console/").status_code == 303
    set_password(services, "alex@acme.test", "a brand new password")
    assert c.get("/console/").status_code == 303  # a new password ends older sessions


def test_failed_logins_are_rate_limited_per_email(app):
    c = client(app)
    token = csrf_of(c)
    for _ in range(5):
        r = c.post("/console/login", data={"email": "alex@acme.test", "password": "guess",
                                           "csrf_token": token})
        assert r.status_code == 401
    r = c.post("/console/login", data={"email": "alex@acme.test", "password": PASSWORD,
                                       "csrf_token": token})
    assert r.status_code == 429 and "Too many failed attempts" in r.text
    assert logged_in(app, "sam@acme.test")  # another agent is not locked out


# -- CSRF -----------------------------------------------------------------------------------------

def test_every_post_without_the_csrf_field_is_refused(app, services):
    ticket = mail_ticket(services)
    c = logged_in(app, "alex@acme.test")
    posts = [
        ("/console/tickets/TKT-0001/reply", {"body": "hello"}),
        ("/console/tickets/TKT-0001/update", {"status": "closed"}),
        ("/console/notifications/read-all", {}),
        ("/console/kb/new", {"title": "Forged"}),
        ("/console/settings", {"brand_name": "Forged"}),
        ("/console/availability", {"available": "0"}),
        ("/console/logout", {}),
    ]
    for path, data in posts:
        for token in (None, "0" * 64):
            r = c.post(path, data={**data, **({"csrf_token": token} if token else {})})
            assert r.status_code == 403, (path, r.status_code)
            assert "Reload the page" in r.text
    fresh = client(app)
    r = fresh.post("/console/login", data={"email": "alex@acme.test", "password": PASSWORD})
    assert r.status_code == 403
    with services.store.read() as s:
        assert s.exec(select(Comment).where(Comment.ticket_id == ticket.id)).all() == []
        assert s.get(Ticket, ticket.id).status == "open"
        assert s.exec(select(KBArticle).where(KBArticle.title == "Forged")).first() is None
        assert s.exec(select(Workspace).where(Workspace.slug == "acme")).one().brand_name \
            == "Acme Support"
    assert c.get("/console/").status_code == 200  # still logged in


# -- workspace isolation --------------------------------------------------------------------------

def test_an_agent_never_sees_another_workspaces_data(app, services):
    mail_ticket(services, "Acme printer", "acme secret")
    acme = mail_ticket(services, "Acme second", "acme second secret")  # TKT-0002 of acme only
    mail_ticket(services, "Globex chair", "globex text", to="support@globex.test")
    alex, gina = logged_in(app, "alex@acme.test"), logged_in(app, "gina@globex.test")
    alex.post("/console/tickets/TKT-0002/reply",
              data={"body": "here you go", "csrf_token": csrf_of(alex, "/console/")},
              files=[("files", ("shot.png", PNG, "image/png"))])
    with services.store.read() as s:
        acme_file = s.exec(select(Attachment).where(Attachment.ticket_id == acme.id)).one()
        acme_article = s.exec(select(KBArticle)).first()
    with services.store.tx() as s:
        alex_id = s.exec(select(Agent).where(Agent.email == "alex@acme.test")).one().id
        note = Notification(workspace_id=acme.workspace_id, agent_id=alex_id, kind="x",
                            text="for Alex")
        s.add(note)
        s.flush()
        note_id = note.id

    queue = gina.get("/console/tickets").text
    assert "Globex chair" in queue and "Acme" not in queue
    assert gina.get("/console/tickets?q=acme").text.count("/console/tickets/TKT-") == 0
    token = csrf_of(gina, "/console/")
    assert gina.get("/console/tickets/TKT-0002").status_code == 404
    assert gina.get(f"/console/tickets/TKT-0001/attachments/{acme_file.id}").status_code == 404
    assert gina.post("/console/tickets/TKT-0002/reply",
                     data={"body": "x", "csrf_token": token}).status_code == 404
    assert gina.post("/console/tickets/TKT-0002/update",
                     data={"status": "closed", "csrf_token": token}).status_code == 404
    assert gina.post(f"/console/notifications/{note_id}/read",
                     data={"csrf_token": token}).status_code == 404
    assert gina.get(f"/console/kb/{acme_article.id}").status_code == 404
    assert gina.post(f"/console/kb/{acme_article.id}",
                     data={"title": "Mine now", "csrf_token": token}).status_code == 404
    assert gina.post(f"/console/kb/{acme_article.id}/publish",
                     data={"published": "0", "csrf_token": token}).status_code == 404
    alex_id_str = str(alex_id)
    r = gina.post("/console/tickets/TKT-0001/update",
                  data={"assignee": alex_id_str, "csrf_token": token})
    assert r.status_code == 422  # another workspace's agent cannot be assigned
    assert "How to reset your password" not in gina.get("/console/kb").text
    assert "1</strong><span>tickets" in gina.get("/console/analytics").text
    with services.store.read() as s:
        assert s.get(Ticket, acme.id).status == "open"
        assert s.get(Notification, note_id).read is False
        assert s.get(KBArticle, acme_article.id).title == acme_article.title
        assert len(s.exec(select(Comment).where(Comment.ticket_id == acme.id)).all()) == 1


# -- the queue and a ticket -----------------------------------------------------------------------

def test_queue_filters_and_urgency_order(app, services):
    mail_ticket(services, "Calm question", "When do you open on Monday?")
    mail_ticket(services, "Angry", "This is terrible, awful, the worst service. I hate it.")
    c = logged_in(app, "alex@acme.test")
    page = c.get("/console/tickets").text
    assert page.index("Angry") < page.index("Calm question")  # negative sentiment first
    assert "upset" in page
    only = c.get("/console/tickets?q=monday").text
    assert "Calm question" in only and "Angry" not in only
    assert "No tickets match" in c.get("/console/tickets?status=closed").text
    assert c.get("/console/tickets?status=bogus").status_code == 400


def test_reply_with_a_file_then_a_note_then_a_refused_file(app, services):
    ticket = mail_ticket(services)
    c = logged_in(app, "alex@acme.test")
    token = csrf_of(c, "/console/tickets/TKT-0001")
    r = c.post("/console/tickets/TKT-0001/reply",
               data={"body": "Here is the fix.", "csrf_token": token},
               files=[("files", ("fix.png", PNG, "image/png"))])
    assert r.status_code == 303 and r.headers["location"].startswith(
        "/console/tickets/TKT-0001?done=replied#c")
    assert outbox_kinds(services, ticket).count("customer/agent_reply") == 1

    r = c.post("/console/tickets/TKT-0001/reply",
               data={"body": "Customer sounds upset", "internal": "1", "csrf_token": token})
    assert r.status_code == 303
    assert outbox_kinds(services, ticket).count("customer/agent_reply") == 1  # a note stays

    page = c.get("/console/tickets/TKT-0001?done=noted").text
    assert "Internal note added." in page
    assert re.search(r'class="comment agent internal"[^>]*>.*?Customer sounds upset', page, re.S)
    assert re.search(r'class="comment agent"[^>]*>.*?Here is the fix\..*?fix\.png', page, re.S)
    with services.store.read() as s:
        a = s.exec(select(Attachment).where(Attachment.ticket_id == ticket.id)).one()
    assert f'/console/tickets/TKT-0001/attachments/{a.id}' in page
    download = c.get(f"/console/tickets/TKT-0001/attachments/{a.id}")
    assert download.status_code == 200 and download.content == PNG
    assert download.headers["content-disposition"].startswith("attachment;")

    r = c.post("/console/tickets/TKT-0001/reply",
               data={"body": "see file", "csrf_token": token},
               files=[("files", ("virus.png", b"MZ\x90\x00" + b"\x00" * 64, "image/png"))])
    assert r.status_code == 415 and "virus.png" in r.text
    with services.store.read() as s:
        assert len(s.exec(select(Comment).where(Comment.ticket_id == ticket.id)).all()) == 2


def test_submission_files_sit_in_the_header_card(app, services):
    msg = customer_mail("With a file", "See attached.")
    msg.add_attachment(PNG, maintype="image", subtype="png", filename="screen.png")
    row = deliver(services, msg)
    c = logged_in(app, "alex@acme.test")
    page = c.get(f"/console/tickets/{services.store.ticket(row.ticket_id).reference}").text
    header = page[page.index('id="ticket-header"'):page.index("<h2>Conversation</h2>")]
    assert "screen.png" in header


def test_status_priority_and_assignee_controls(app, services):
    ticket = mail_ticket(services)
    assign(services, ticket, "alex@acme.test")
    c = logged_in(app, "alex@acme.test")
    with services.store.read() as s:
        sam = s.exec(select(Agent).where(Agent.email == "sam@acme.test")).one()
    r = c.post("/console/tickets/TKT-0001/update", data={
        "status": "resolved", "priority": "high", "assignee": str(sam.id),
        "resolution": "Replaced the fuser.", "csrf_token": csrf_of(c, "/console/")})
    assert r.status_code == 303
    with services.store.read() as s:
        t = s.get(Ticket, ticket.id)
        assert (t.status, t.priority, t.assignee_id, t.resolution) == (
            "resolved", "high", sam.id, "Replaced the fuser.")
        told = s.exec(select(Notification).where(Notification.agent_id == sam.id)).all()
        assert [n.kind for n in told] == ["ticket_assigned"]
    assert "customer/ticket_resolved" in outbox_kinds(services, ticket)
    page = c.get("/console/tickets/TKT-0001?done=updated").text
    assert "Ticket updated." in page and 'id="ticket-status">Resolved' in page

    r = c.post("/console/tickets/TKT-0001/update", data={
        "status": "open", "assignee": "", "csrf_token": csrf_of(c, "/console/")})
    with services.store.read() as s:
        t = s.get(Ticket, ticket.id)
        assert (t.status, t.assignee_id) == ("open", None)
    r = c.post("/console/tickets/TKT-0001/update", data={
        "status": "exploded", "csrf_token": csrf_of(c, "/console/")})
    assert r.status_code == 422


# -- notifications --------------------------------------------------------------------------------

def test_notification_badge_count_and_mark_read(app, services):
    ticket = mail_ticket(services)
    assign(services, ticket, "alex@acme.test")
    c = logged_in(app, "alex@acme.test")
    c.post("/console/notifications/read-all", data={"csrf_token": csrf_of(c, "/console/")})
    assert c.get("/console/notifications/count").json() == {"unread": 0}
    deliver(services, customer_mail("Re: Printer is on fire", "Still burning",
                                    In_Reply_To=f"<{services.store.outbox(ticket_id=ticket.id)[0].message_id}>"))
    assert c.get("/console/notifications/count").json() == {"unread": 1}
    assert 'id="unread-badge" data-count-url="/console/notifications/count" ' \
           'aria-label="1 unread">1</span>' in c.get("/console/").text
    page = c.get("/console/notifications").text
    assert "TKT-0001" in page
    with services.store.read() as s:
        n = s.exec(select(Notification).where(Notification.read == False)).one()  # noqa: E712
        assert n.kind == "customer_replied"
    r = c.post(f"/console/notifications/{n.id}/read", data={"csrf_token": csrf_of(c, "/console/")})
    assert r.status_code == 303
    assert c.get("/console/notifications/count").json() == {"unread": 0}


# -- dashboard, KB, branding ----------------------------------------------------------------------

def test_dashboard_portal_card_and_snippets(app, services):
    c = logged_in(app, "alex@acme.test")
    assert c.get("/console").headers["location"].endswith("/console/")
    page = logged_in(app, "alex@acme.test").get("/console/").text
    base = services.settings.public_url.rstrip("/")
    assert f'value="{base}/portal/acme/submit"' in page
    assert 'data-copy="portal-link"' in page and "Copy Link" in page
    assert f"&lt;iframe src=&#34;{base}/portal/acme/submit?embed=1&#34;" in page
    assert (f"&lt;script src=&#34;{base}/portal/acme/widget.js&#34; "
            "async&gt;&lt;/script&gt;") in page
    assert "min-height:720px" in page


def test_availability_toggle(app, services):
    c = logged_in(app, "alex@acme.test")
    c.post("/console/availability", data={"available": "0", "csrf_token": csrf_of(c, "/console/")})
    with services.store.read() as s:
        assert s.exec(select(Agent).where(Agent.email == "alex@acme.test")).one().available \
            is False
    assert "Set me available" in c.get("/console/").text


def test_kb_editor(app, services):
    c = logged_in(app, "alex@acme.test")
    token = csrf_of(c, "/console/kb/new")
    r = c.post("/console/kb/new", data={"title": "Fix the printer", "body": "Turn it off.",
                                        "visibility": "internal", "csrf_token": token})
    assert r.status_code == 303
    article_id = int(re.search(r"/console/kb/(\d+)", r.headers["location"]).group(1))
    with services.store.read() as s:
        a = s.get(KBArticle, article_id)
        assert (a.published, a.visibility) == (False, "internal")
    assert "Fix the printer" in c.get("/console/kb").text
    c.post(f"/console/kb/{article_id}", data={"title": "Fix the printer", "body": "Unplug it.",
                                              "visibility": "public", "published": "1",
                                              "csrf_token": token})
    with services.store.read() as s:
        a = s.get(KBArticle, article_id)
        assert (a.body, a.published, a.visibility) == ("Unplug it.", True, "public")
    c.post(f"/console/kb/{article_id}/publish", data={"published": "0", "csrf_token": token})
    with services.store.read() as s:
        assert s.get(KBArticle, article_id).published is False
    r = c.post("/console/kb/new", data={"title": "Fix the printer", "csrf_token": token})
    assert r.status_code == 409 and "exists already" in r.text
    assert c.post("/console/kb/new", data={"title": " ", "csrf_token": token}).status_code == 422
    r = c.post("/console/kb/new", data={"title": "x", "visibility": "everyone",
                                        "csrf_token": token})
    assert r.status_code == 422


def test_branding_settings(app, services):
    c = logged_in(app, "alex@acme.test")
    token = csrf_of(c, "/console/settings")
    r = c.post("/console/settings", data={
        "brand_name": "Acme Help", "primary_color": "#0f766e", "logo_url": "",
        "support_email": "care@acme.test", "assignment_mode": "least_open", "csrf_token": token})
    assert r.status_code == 303
    with services.store.read() as s:
        ws = s.exec(select(Workspace).where(Workspace.slug == "acme")).one()
        assert (ws.brand_name, ws.primary_color, ws.logo_url, ws.support_email,
                ws.assignment_mode) == ("Acme Help", "#0f766e", None, "care@acme.test",
                                        "least_open")
    page = c.get("/console/settings").text
    assert 'id="preview-header" style="background: #0f766e' in page
    assert '<span id="preview-name">Acme Help</span>' in page
    r = c.post("/console/settings", data={"primary_color": "red; x", "csrf_token": token})
    assert r.status_code == 422 and "Brand colour must be a colour" in r.text
    r = c.post("/console/settings", data={"logo_url": "javascript:alert(1)", "csrf_token": token})
    assert r.status_code == 422


# -- analytics ------------------------------------------------------------------------------------

def test_analytics_without_data_says_so(app):
    page = logged_in(app, "alex@acme.test").get("/console/analytics").text
    assert page.count("No data yet") == 5


def test_analytics_figures(app, services):
    first = mail_ticket(services, "One", "first")
    second = mail_ticket(services, "Two", "second")
    mail_ticket(services, "Three", "third")
    with services.store.tx() as s:
        alex = s.exec(select(Agent).where(Agent.email == "alex@acme.test")).one()
        for ticket, minutes in ((first, 10), (second, 30)):
            t = s.get(Ticket, ticket.id)
            s.add(Comment(ticket_id=t.id, author_kind="agent", agent_id=alex.id, body="a",
                          internal=True, created_at=t.created_at + timedelta(minutes=1)))
            s.add(Comment(ticket_id=t.id, author_kind="agent", agent_id=alex.id, body="b",
                          created_at=t.created_at + timedelta(minutes=minutes)))
        t = s.get(Ticket, first.id)
        t.status = "resolved"
        s.add(t)
        s.add(CSATRating(ticket_id=first.id, rating=5))
        s.add(CSATRating(ticket_id=second.id, rating=2))
        ws_id = first.workspace_id
        for session, events in (("s1", ["shown"]), ("s2", ["shown", "clicked"]),
                                ("s3", ["shown", "submitted"]), ("s4", ["submitted"])):
            for event in events:
                s.add(DeflectionEvent(workspace_id=ws_id, session_id=session, event=event))
    with services.store.read() as s:
        f = figures(s, ws_id)
    assert f.total == 3 and f.by_channel["email"] == 3
    assert f.by_status["open"] == 2 and f.by_status["resolved"] == 1
    assert (f.csat_count, f.csat_average) == (2, 3.5)
    assert f.csat_distribution == {1: 0, 2: 1, 3: 0, 4: 0, 5: 1}
    assert (f.deflection_sessions, f.deflection_avoided) == (3, 2)  # s4 was never shown one
    assert f.first_response_count == 2 and f.first_response_median == timedelta(minutes=20)

    page = logged_in(app, "alex@acme.test").get("/console/analytics").text
    assert "3.5</strong>" in page and "67%</strong>" in page and "20 min</strong>" in page
    assert "2 of 3 form sessions" in page and "No data yet" not in page


def test_duration_reads_naturally():
    assert duration(timedelta(seconds=40)) == "40 s"
    assert duration(timedelta(minutes=12, seconds=5)) == "12 min"
    assert duration(timedelta(hours=2, minutes=5)) == "2 h 5 min"
    assert duration(timedelta(days=3, hours=4, minutes=9)) == "3 d 4 h"
    assert duration(None) == ""


def test_a_held_reply_is_accepted_from_the_console(app, services):
    ticket = mail_ticket(services)
    conf = next(m for m in services.store.outbox(ticket_id=ticket.id)
                if m.kind == "customer/ticket_received")
    row = deliver(services, customer_mail(f"Re: [{ticket.reference}] Printer is on fire",
                                          "Jane's colleague here: it is out.",
                                          sender="Ken <ken@customer.test>",
                                          In_Reply_To=f"<{conf.message_id}>"),
                  mail_from="ken@customer.test")
    assert row.reason.startswith("held as internal note")
    c = logged_in(app, "alex@acme.test")
    page = c.get("/console/tickets/TKT-0001").text
    assert "Held for review" in page and "Accept as the customer's reply" in page
    with services.store.read() as s:
        held = s.exec(select(Comment).where(Comment.ticket_id == ticket.id)).one()
    path = f"/console/tickets/TKT-0001/comments/{held.id}/accept"
    assert c.post(path, data={}).status_code == 403  # CSRF, as everywhere
    r = c.post(path, data={"csrf_token": csrf_of(c, "/console/tickets/TKT-0001")})
    assert r.status_code == 303
    with services.store.read() as s:
        after = s.get(Comment, held.id)
    assert (after.internal, after.held_reason, after.author_kind) == (False, None, "customer")
