"""The agents' API through httpx against the real Starlette app (SQLite and PostgreSQL), and once
against the running gateway: an agent made with the CLI works a mailed ticket to resolution."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import io
import os
import re
import zipfile

import httpx
import pytest
from sqlmodel import select

from gateway.credentials import hash_api_key
from gateway.services import Services
from portal.app import create_app
from storage.models import Agent, CSATRating, KBArticle, Notification, Ticket, Workspace
from tests.conftest import customer_mail, start_gateway, stop_gateway
from tests.test_pipeline import deliver

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
       b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x03\x00\x08\xfc\x02\xfe\xa7"
       b"\x9a\xa0\xa0\x00\x00\x00\x00IEND\xaeB`\x82")


class Api:
    """httpx over ASGITransport: real HTTP semantics against the app, no server needed."""

    def __init__(self, app, key: str | None = None) -> None:
        self.app, self.key = app, key

    def request(self, method: str, url: str, **kw) -> httpx.Response:
        headers = kw.pop("headers", None) or {}
        if self.key and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {self.key}"

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as c:
                return await c.request(method, url, headers=headers, **kw)
        return asyncio.run(go())

    def get(self, url, **kw):
        return self.request("GET", url, **kw)

    def post(self, url, **kw):
        return self.request("POST", url, **kw)

    def patch(self, url, **kw):
        return self.request("PATCH", url, **kw)

    def put(self, url, **kw):
        return self.request("PUT", url, **kw)

    def delete(self, url, **kw):
        return self.request("DELETE", url, **kw)


def give_key(services: Services, email_addr: str, key: str) -> int:
    with services.store.tx() as s:
        agent = s.exec(select(Agent).where(Agent.email == email_addr)).one()
        agent.api_key_hash = hash_api_key(key)
        s.add(agent)
        return agent.id


def add_globex(services) -> None:
    """A second workspace beside the demo's acme, with one agent, Gina."""
    with services.store.tx() as s:
        ws = Workspace(slug="globex", name="Globex")
        s.add(ws)
        s.flush()
        services.store.add_support_address(s, ws.id, "support@globex.test")
        s.add(Agent(workspace_id=ws.id, name="Gina", email="gina@globex.test"))


@pytest.fixture
def two(services):
    """acme (demo, Alex holds key-acme) and globex (Gina holds key-globex), and their apps."""
    add_globex(services)
    give_key(services, "alex@acme.test", "key-acme")
    give_key(services, "gina@globex.test", "key-globex")
    app = create_app(services)
    return Api(app, "key-acme"), Api(app, "key-globex")


def mail_ticket(services, subject="Printer is on fire", body="It burns. Room 4.", **kw) -> Ticket:
    row = deliver(services, customer_mail(subject, body, **kw))
    assert row.outcome == "new_ticket"
    return services.store.ticket(row.ticket_id)


def parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def text_of(msg) -> str:
    return msg.get_body(("plain",)).get_content()


# -- access ---------------------------------------------------------------------------------------

def test_every_path_wants_a_valid_key(services, two):
    acme, _ = two
    mail_ticket(services)
    anon, wrong = Api(acme.app), Api(acme.app, "wk_not-a-key")
    for method, path in API_CALLS:
        for client in (anon, wrong):
            r = client.request(method, path, json={})
            assert r.status_code == 401, (method, path, r.status_code)
            assert "API key" in r.json()["error"]
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert anon.get("/api/agent/openapi.json").status_code == 200  # the description is public


API_CALLS = [
    ("GET", "/api/agent/tickets"), ("GET", "/api/agent/tickets/TKT-0001"),
    ("PATCH", "/api/agent/tickets/TKT-0001"), ("POST", "/api/agent/tickets/TKT-0001/replies"),
    ("POST", "/api/agent/tickets/TKT-0001/status"),
    ("GET", "/api/agent/tickets/TKT-0001/attachments/1"),
    ("POST", "/api/agent/tickets/TKT-0001/comments/1/accept"), ("GET", "/api/agent/notifications"),
    ("POST", "/api/agent/notifications/1/read"), ("GET", "/api/agent/me"),
    ("PUT", "/api/agent/me/availability"), ("GET", "/api/agent/workspace"),
    ("PATCH", "/api/agent/workspace"), ("POST", "/api/agent/workspace/addresses"),
    ("DELETE", "/api/agent/workspace/addresses/support@acme.test"), ("GET", "/api/agent/kb"),
    ("POST", "/api/agent/kb"), ("GET", "/api/agent/kb/1"), ("PATCH", "/api/agent/kb/1"),
    ("DELETE", "/api/agent/kb/1"),
]


def test_another_workspaces_key_reaches_nothing_of_acme(services, two):
    acme, globex = two
    ticket = mail_ticket(services)
    reply = acme.post(f"/api/agent/tickets/{ticket.reference}/replies",
                      data={"body": "see file"}, files=[("files", ("dot.png", PNG, "image/png"))])
    assert reply.status_code == 201
    att = reply.json()["attachments"][0]
    with services.store.read() as s:
        note = s.exec(select(Notification)).first()
        article = s.exec(select(KBArticle)).first()
    ref = ticket.reference
    before = services.store.ticket(ticket.id)
    mails = len(services.store.outbox())
    calls = [
        ("GET", f"/api/agent/tickets/{ref}", None),
        ("GET", f"/api/agent/tickets/{ticket.number}", None),
        ("PATCH", f"/api/agent/tickets/{ref}", {"priority": "urgent"}),
        ("POST", f"/api/agent/tickets/{ref}/replies", {"body": "hijack"}),
        ("POST", f"/api/agent/tickets/{ref}/status", {"status": "resolved"}),
        ("GET", att["url"], None),
        ("POST", f"/api/agent/notifications/{note.id}/read", None),
        ("GET", f"/api/agent/kb/{article.id}", None),
        ("PATCH", f"/api/agent/kb/{article.id}", {"title": "Mine now"}),
        ("DELETE", f"/api/agent/kb/{article.id}", None),
        ("DELETE", "/api/agent/workspace/addresses/support@acme.test", None),
    ]
    for method, path, body in calls:
        r = globex.request(method, path, json=body)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
        assert "error" in r.json()
    # Taking acme's address is refused too; lists show only globex's own rows.
    assert globex.post("/api/agent/workspace/addresses",
                       json={"address": "support@acme.test"}).status_code == 409
    assert globex.get("/api/agent/tickets").json()["tickets"] == []
    assert globex.get("/api/agent/tickets", params={"q": "Printer"}).json()["total"] == 0
    assert globex.get("/api/agent/notifications").json() == {"notifications": [], "unread": 0}
    assert globex.get("/api/agent/kb").json() == {"articles": []}
    ws = globex.get("/api/agent/workspace").json()
    assert ws["slug"] == "globex" and ws["support_addresses"] == ["support@globex.test"]
    # ...and nothing of acme changed or was mailed.
    after = services.store.ticket(ticket.id)
    assert (after.status, after.priority) == (before.status, before.priority)
    assert len(services.store.outbox()) == mails
    assert acme.get(f"/api/agent/kb/{article.id}").status_code == 200
    with services.store.read() as s:
        assert s.get(Notification, note.id).read is False


# -- the queue and a ticket -----------------------------------------------------------------------

def test_queue_filters_and_puts_angry_and_old_first(services, two):
    acme, _ = two
    calm_old = mail_ticket(services, "Question about invoices", "Could you send a copy? Thanks!")
    angry = mail_ticket(services, "Terrible, broken again", "This is awful and I am furious.",
                        sender="Bob <bob@customer.test>")
    calm_new = mail_ticket(services, "Feature idea", "It would be nice to have dark mode.")
    refs = [t["reference"] for t in acme.get("/api/agent/tickets").json()["tickets"]]
    assert refs == [angry.reference, calm_old.reference, calm_new.reference]

    acme.post(f"/api/agent/tickets/{calm_new.reference}/status", json={"status": "waiting"})
    assert [t["reference"] for t in acme.get(
        "/api/agent/tickets", params={"status": "waiting"}).json()["tickets"]] == [
        calm_new.reference]
    assert acme.get("/api/agent/tickets", params={"status": "open,waiting"}).json()["total"] == 3
    assert acme.get("/api/agent/tickets", params={"q": "bob@customer"}).json()["tickets"][0][
        "reference"] == angry.reference
    assert acme.get("/api/agent/tickets", params={"q": "DARK MODE"}).json()["total"] == 1
    assert acme.get("/api/agent/tickets", params={"q": "100%"}).json()["total"] == 0
    assert acme.get("/api/agent/tickets", params={"q": calm_old.reference}).json()["total"] == 1
    assert acme.get("/api/agent/tickets", params={"channel": "portal"}).json()["total"] == 0
    mine = acme.get("/api/agent/tickets", params={"assignee": "me"}).json()["tickets"]
    assert mine and all(t["assignee"]["email"] == "alex@acme.test" for t in mine)
    sams = acme.get("/api/agent/tickets", params={"assignee": "sam@acme.test"}).json()
    assert sams["total"] == 3 - len(mine)
    for params, word in (({"status": "done"}, "status"), ({"channel": "fax"}, "channel"),
                         ({"limit": "-1"}, "limit"), ({"assignee": "ghost@x.test"}, "agent")):
        r = acme.get("/api/agent/tickets", params=params)
        assert r.status_code in (400, 422) and word in r.json()["error"], params


def test_ticket_detail_shows_customer_participants_comments_files_and_csat(services, two):
    acme, _ = two
    ticket = mail_ticket(services, Cc="Carl <carl@customer.test>")
    ref = ticket.reference
    acme.post(f"/api/agent/tickets/{ref}/replies", json={"body": "Checking.", "internal": True})
    acme.post(f"/api/agent/tickets/{ref}/replies", data={"body": "Here is the plan."},
              files=[("files", ("plan.png", PNG, "image/png"))])
    d = acme.get(f"/api/agent/tickets/{ref.lower()}").json()
    assert d["customer"] == {"name": "Jane Customer", "email": "jane@customer.test"}
    assert d["participants"] == [{"name": "Carl", "email": "carl@customer.test"}]
    assert (d["channel"], d["status"], d["priority"]) == ("email", "open", "medium")
    assert d["sentiment"] < 0 and d["assignee"]["email"] in ("alex@acme.test", "sam@acme.test")
    [note, public] = d["comments"]
    assert (note["internal"], note["body"], note["attachments"]) == (True, "Checking.", [])
    assert public["internal"] is False and public["author_name"] == "Alex Agent"
    [file] = public["attachments"]
    assert (file["filename"], file["content_type"], file["size"]) == ("plan.png", "image/png",
                                                                      len(PNG))
    got = acme.get(file["url"])
    assert got.content == PNG and got.headers["content-type"] == "image/png"
    assert got.headers["content-disposition"].startswith("attachment")
    assert d["csat"] is None
    with services.store.tx() as s:
        s.add(CSATRating(ticket_id=ticket.id, rating=4, comment="Quick, thanks"))
    assert acme.get(f"/api/agent/tickets/{ref}").json()["csat"] == {"rating": 4,
                                                                    "comment": "Quick, thanks"}
    assert acme.get("/api/agent/tickets/TKT-9999").status_code == 404
    assert acme.get("/api/agent/tickets/not-a-ref").status_code == 404


# -- replies --------------------------------------------------------------------------------------

def test_public_reply_mails_customer_and_participants_threaded_with_the_tracking_link(
        services, two):
    acme, _ = two
    customer = customer_mail("Printer is on fire", "It burns.", Cc="carl@customer.test")
    row = deliver(services, customer)
    ticket = services.store.ticket(row.ticket_id)
    r = acme.post(f"/api/agent/tickets/{ticket.reference}/replies",
                  json={"body": "Leave the room, we are coming."})
    assert r.status_code == 201 and r.json()["internal"] is False
    mails = [m for m in services.store.outbox(ticket_id=ticket.id)
             if m.kind == "customer/agent_reply"]
    assert sorted(m.rcpt_to for m in mails) == ["carl@customer.test", "jane@customer.test"]
    for m in mails:
        msg = parsed(m.raw)
        assert not m.automatic and m.agent_id is not None
        assert msg["Auto-Submitted"] is None  # a person wrote it
        assert msg["In-Reply-To"] == customer["Message-ID"]
        assert customer["Message-ID"] in msg["References"]
        assert msg["Subject"] == f"[{ticket.reference}] Re: Printer is on fire"
        body = text_of(msg)
        assert "Leave the room, we are coming." in body
        assert f"/portal/acme/tickets/{ticket.reference}?t=" in body
        assert "It burns." in body  # the history quotes the request
    # The reply shows to the customer (public comments are what the tracking page lists).
    assert [c.body for c in services.store.public_comments(ticket.id)] == [
        "Leave the room, we are coming."]


def test_internal_note_never_leaves(services, two):
    acme, _ = two
    ticket = mail_ticket(services)
    before = len(services.store.outbox(ticket_id=ticket.id))
    r = acme.post(f"/api/agent/tickets/{ticket.reference}/replies",
                  data={"body": "Customer sounds upset", "internal": "true"},
                  files=[("files", ("notes.txt", b"call them back", "text/plain"))])
    assert r.status_code == 201 and r.json()["internal"] is True
    assert len(services.store.outbox(ticket_id=ticket.id)) == before
    assert services.store.public_comments(ticket.id) == []


def _docx() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w:document/>")
    return buf.getvalue()


def test_reply_files_are_checked_by_extension_declared_type_and_content(services, two):
    acme, _ = two
    ticket = mail_ticket(services)
    url = f"/api/agent/tickets/{ticket.reference}/replies"
    docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    ok = acme.post(url, data={"body": "files"}, files=[
        ("files", ("shot.png", PNG, "image/png")),
        ("files", ("data.csv", b"a,b\n1,2\n", "text/csv")),
        ("files", ("logo.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml")),
        ("files", ("report.docx", _docx(), docx)),
        ("files", ("doc.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n%%EOF",
                   "application/octet-stream")),
    ])
    assert ok.status_code == 201, ok.text
    assert [a["content_type"] for a in ok.json()["attachments"]] == [
        "image/png", "text/csv", "image/svg+xml", docx, "application/pdf"]
    refused = [
        (("tool.exe", b"MZ\x90\x00" + b"\x00" * 60, "application/octet-stream"), "not accepted"),
        (("photo.png", b"<html><script>alert(1)</script></html>", "image/png"), "not image/png"),
        (("photo.png", PNG, "text/html"), "declared as text/html"),
        (("notes.txt", PNG, "text/plain"), "image/png, not text/plain"),
        (("report.docx", PNG, docx), "not " + docx),
    ]
    for file, message in refused:
        r = acme.post(url, data={"body": "x"}, files=[("files", file)])
        assert r.status_code == 415 and message in r.json()["error"], (file[0], r.text)
    big = acme.post(url, data={"body": "x"},
                    files=[("files", ("big.txt", b"a" * (10 * 1024 * 1024 + 1), "text/plain"))])
    assert big.status_code == 413 and "10 MB" in big.json()["error"]
    six = acme.post(url, data={"body": "x"},
                    files=[("files", (f"f{i}.txt", b"hi", "text/plain")) for i in range(6)])
    assert six.status_code == 400 and "5" in six.json()["error"]
    # Nothing refused was stored, and each refusal posted nothing.
    comments = acme.get(f"/api/agent/tickets/{ticket.reference}").json()["comments"]
    assert len(comments) == 1
    for bad in ({}, {"body": 3}, {"body": "x", "internal": "yes"}, {"body": "x", "cc": "a"}):
        r = acme.post(url, json=bad)
        assert r.status_code == 422, bad
    assert acme.post(url, content=b"{not json", headers={
        "Content-Type": "application/json"}).status_code == 400
    assert acme.post(url, json={"body": "   "}).status_code == 422


# -- status, priority, assignment -----------------------------------------------------------------

def test_resolving_sends_the_csat_mail_once(services, two):
    acme, _ = two
    ticket = mail_ticket(services)
    ref = ticket.reference

    def resolved_mails():
        return [m for m in services.store.outbox(ticket_id=ticket.id)
                if m.kind == "customer/ticket_resolved"]

    r = acme.post(f"/api/agent/tickets/{ref}/status",
                  json={"status": "resolved", "resolution": "Replaced the fuser."})
    assert r.status_code == 200
    d = r.json()
    assert (d["status"], d["resolution"]) == ("resolved", "Replaced the fuser.")
    assert d["resolved_at"] is not None
    [mail] = resolved_mails()
    body = text_of(parsed(mail.raw))
    assert "Replaced the fuser." in body and "/portal/acme/feedback?t=" in body
    assert mail.rcpt_to == "jane@customer.test"
    # The same change again, and a quick reopen-and-resolve, send no second survey.
    acme.post(f"/api/agent/tickets/{ref}/status", json={"status": "resolved"})
    acme.post(f"/api/agent/tickets/{ref}/status", json={"status": "open"})
    assert acme.get(f"/api/agent/tickets/{ref}").json()["resolved_at"] is None
    acme.post(f"/api/agent/tickets/{ref}/status", json={"status": "resolved"})
    assert len(resolved_mails()) == 1


def test_waiting_asks_the_customer_and_closed_needs_no_survey(services, two):
    acme, _ = two
    ticket = mail_ticket(services)
    acme.post(f"/api/agent/tickets/{ticket.reference}/replies",
              json={"body": "Which floor is the printer on?"})
    before = len(services.store.outbox(ticket_id=ticket.id))
    for status in ("in_progress", "waiting", "closed"):
        r = acme.post(f"/api/agent/tickets/{ticket.reference}/status", json={"status": status})
        assert r.status_code == 200 and r.json()["status"] == status
    [ask] = services.store.outbox(ticket_id=ticket.id)[before:]  # waiting asked; closed did not
    assert ask.kind == "customer/waiting_on_you" and ask.rcpt_to == "jane@customer.test"
    msg = parsed(ask.raw)
    assert "Waiting for your reply" in str(msg["Subject"]) and msg["In-Reply-To"]
    assert "Which floor is the printer on?" in text_of(msg)
    bad = acme.post(f"/api/agent/tickets/{ticket.reference}/status", json={"status": "done"})
    assert bad.status_code == 422 and "in_progress" in bad.json()["error"]


def test_priority_and_assignee_change_and_the_new_assignee_is_told(services, two):
    acme, _ = two
    ticket = mail_ticket(services)
    ref = ticket.reference
    r = acme.patch(f"/api/agent/tickets/{ref}",
                   json={"priority": "urgent", "assignee": "sam@acme.test"})
    assert r.status_code == 200
    assert (r.json()["priority"], r.json()["assignee"]["email"]) == ("urgent", "sam@acme.test")
    sam_id = r.json()["assignee"]["id"]
    with services.store.read() as s:
        notes = list(s.exec(select(Notification).where(Notification.agent_id == sam_id)))
    assert any("assigned to you by Alex Agent" in n.text for n in notes)
    assert any(m.kind == "agent/ticket_assigned" and m.rcpt_to == "sam@acme.test"
               for m in services.store.outbox(ticket_id=ticket.id))
    r = acme.post(f"/api/agent/tickets/{ref}/status", json={"assignee": None})
    assert r.json()["assignee"] is None
    r = acme.post(f"/api/agent/tickets/{ref}/status", json={"assignee": "me"})
    assert r.json()["assignee"]["email"] == "alex@acme.test"
    for bad, word in (({"priority": "meh"}, "priority"), ({"assignee": "gina@globex.test"},
                      "no agent"), ({"assignee": 1.5}, "assignee"), ({}, "at least one"),
                      ({"status": "open", "color": "red"}, "unknown")):
        r = acme.patch(f"/api/agent/tickets/{ref}", json=bad)
        assert r.status_code == 422 and word in r.json()["error"], bad


# -- notifications, availability, settings --------------------------------------------------------

def test_notifications_list_and_mark_read(services, two):
    acme, _ = two
    ticket = mail_ticket(services)
    with services.store.tx() as s:
        t = s.get(Ticket, ticket.id)
        alex = services.store.agent_by_email(s, t.workspace_id, "alex@acme.test")
        t.assignee_id = alex.id
        s.add(t)
    deliver(services, customer_mail(f"Re: [{ticket.reference}] Printer", "Still burning."))
    listed = acme.get("/api/agent/notifications").json()
    assert listed["unread"] >= 1
    newest = listed["notifications"][0]
    assert newest["kind"] == "customer_replied" and newest["ticket"] == ticket.reference
    r = acme.post(f"/api/agent/notifications/{newest['id']}/read")
    assert r.status_code == 200 and r.json()["read"] is True
    after = acme.get("/api/agent/notifications", params={"unread": "true"}).json()
    assert newest["id"] not in [n["id"] for n in after["notifications"]]
    assert after["unread"] == listed["unread"] - 1
    assert acme.post("/api/agent/notifications/99999/read").status_code == 404


def test_away_agents_get_no_new_tickets(services, two):
    acme, _ = two
    r = acme.put("/api/agent/me/availability", json={"available": False})
    assert r.status_code == 200 and r.json()["available"] is False
    assignees = {mail_ticket(services, f"Issue {i}", "help").assignee_id for i in range(3)}
    assert [a["email"] for a in [acme.get("/api/agent/me").json()]] == ["alex@acme.test"]
    with services.store.read() as s:
        sam = s.exec(select(Agent).where(Agent.email == "sam@acme.test")).one()
    assert assignees == {sam.id}
    assert acme.put("/api/agent/me/availability", json={"available": "no"}).status_code == 422
    assert acme.put("/api/agent/me/availability", json={"available": True}).json()["available"]


def test_workspace_settings_and_support_addresses(services, two):
    acme, _ = two
    r = acme.patch("/api/agent/workspace", json={
        "brand_name": "Acme Help", "primary_color": "#0f766e", "logo_url": None,
        "assignment_mode": "least_open"})
    assert r.status_code == 200
    ws = r.json()
    assert (ws["brand_name"], ws["primary_color"], ws["logo_url"], ws["assignment_mode"]) == (
        "Acme Help", "#0f766e", None, "least_open")
    assert services.store.workspace_by_slug("acme").brand_name == "Acme Help"
    for bad, word in (({"primary_color": "red; x"}, "colour"),
                      ({"logo_url": "javascript:alert(1)"}, "URL"),
                      ({"assignment_mode": "random"}, "assignment_mode"),
                      ({"name": ""}, "empty"), ({"slug": "evil"}, "unknown")):
        r = acme.patch("/api/agent/workspace", json=bad)
        assert r.status_code == 422 and word in r.json()["error"], bad
    r = acme.post("/api/agent/workspace/addresses", json={"address": "Help@Acme.test"})
    assert r.status_code == 201 and r.json()["support_addresses"] == [
        "support@acme.test", "help@acme.test"]
    assert services.store.workspace_for_address("help@acme.test").slug == "acme"
    assert acme.post("/api/agent/workspace/addresses",
                     json={"address": "help@acme.test"}).status_code == 409
    assert acme.delete("/api/agent/workspace/addresses/support@acme.test").status_code == 204
    last = acme.delete("/api/agent/workspace/addresses/help@acme.test")
    assert last.status_code == 409 and "last" in last.json()["error"]


def test_knowledge_base_articles_crud(services, two):
    acme, _ = two
    r = acme.post("/api/agent/kb", json={"title": "Resetting the printer",
                                         "body": "Hold the button for 10 s.",
                                         "published": False, "visibility": "internal"})
    assert r.status_code == 201
    art = r.json()
    assert (art["published"], art["visibility"]) == (False, "internal")
    assert acme.post("/api/agent/kb", json={"title": "Resetting the printer"}).status_code == 409
    r = acme.patch(f"/api/agent/kb/{art['id']}", json={"published": True,
                                                      "visibility": "public"})
    assert (r.json()["published"], r.json()["visibility"]) == (True, "public")
    titles = [a["title"] for a in acme.get("/api/agent/kb").json()["articles"]]
    assert "Resetting the printer" in titles and len(titles) == 6  # 5 demo articles
    assert acme.patch(f"/api/agent/kb/{art['id']}",
                      json={"visibility": "everyone"}).status_code == 422
    assert acme.delete(f"/api/agent/kb/{art['id']}").status_code == 204
    assert acme.get(f"/api/agent/kb/{art['id']}").status_code == 404


def test_openapi_describes_exactly_the_routes(services, two):
    acme, _ = two
    spec = acme.get("/api/agent/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    described = {(path, method.upper()) for path, item in spec["paths"].items()
                 for method in item if method != "parameters"}
    routed = set()
    for route in acme.app.routes:
        path = getattr(route, "path", "")
        if path.startswith("/api/agent"):
            for method in route.methods - {"HEAD"}:
                routed.add((re.sub(r"\{(\w+):\w+\}", r"{\1}", path), method))
    assert described == routed


# -- the running gateway: CLI agent, mail in, API reply and resolve, mail out ------------------

def test_cli_agent_works_a_mailed_ticket_through_the_running_gateway(tmp_path, database_url,
                                                                        sink, monkeypatch):
    from gateway import accounts_cli

    running = start_gateway(tmp_path, database_url, sink.port)
    try:
        # `workestra agents add` on the gateway's environment, while it runs: the command's own
        # main() in this process (tests/test_accounts_cli.py runs it as a real process)
        for name in list(os.environ):
            if name.startswith("WORKESTRA_"):
                monkeypatch.delenv(name)
        for name, value in running.env.items():
            if name.startswith(("WORKESTRA_", "DATABASE_")):
                monkeypatch.setenv(name, value)
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert accounts_cli.main(["agents", "add", "acme", "--name", "Robin Agent",
                                      "--email", "robin@acme.test"]) == 0
        key = out.getvalue().splitlines()[-1]
        api = httpx.Client(base_url=running.base_url, timeout=30,
                           headers={"Authorization": f"Bearer {key}"})
        customer = customer_mail("VPN drops every hour", "Since Monday the VPN disconnects.")
        running.send(customer, "jane@customer.test", ["support@acme.test"])
        confirmation = sink.wait_for(lambda m: "VPN drops" in str(m["Subject"]))
        ref = re.search(r"TKT-\d+", str(confirmation["Subject"])).group(0)

        listed = api.get("/api/agent/tickets", params={"q": "VPN"}).json()["tickets"]
        assert [t["reference"] for t in listed] == [ref]
        r = api.post(f"/api/agent/tickets/{ref}/replies",
                     json={"body": "Please send us the client log."})
        assert r.status_code == 201
        reply = sink.wait_for(lambda m: "Please send us the client log." in text_of(m))
        assert reply["To"].addresses[0].addr_spec == "jane@customer.test"
        assert reply["In-Reply-To"] == customer["Message-ID"]
        assert f"/portal/acme/tickets/{ref}?t=" in text_of(reply)
        assert "Robin Agent" in text_of(reply)

        for _ in range(2):  # resolving twice still sends one survey
            r = api.post(f"/api/agent/tickets/{ref}/status",
                         json={"status": "resolved", "resolution": "New VPN profile pushed."})
            assert r.status_code == 200 and r.json()["status"] == "resolved"
        resolved = sink.wait_for(lambda m: "Resolved:" in str(m["Subject"]))
        assert "/portal/acme/feedback?t=" in text_of(resolved)
        assert "New VPN profile pushed." in text_of(resolved)
        other = httpx.get(f"{running.base_url}/api/agent/tickets/{ref}",
                          headers={"Authorization": "Bearer wk_wrong"})
        assert other.status_code == 401
        # Give a stray second survey time to show up behind the first, then count.
        api.post(f"/api/agent/tickets/{ref}/replies", json={"body": "Closing note", "internal":
                                                            True})
        last = api.post(f"/api/agent/tickets/{ref}/replies", json={"body": "Bye now."})
        assert last.status_code == 201
        sink.wait_for(lambda m: "Bye now." in text_of(m))
        surveys = [m for m in sink.to("jane@customer.test") if "Resolved:" in str(m["Subject"])]
        assert len(surveys) == 1
        assert not any("Closing note" in text_of(m) for m in sink.messages)
        api.close()
    finally:
        stop_gateway(running)


def test_a_held_reply_accepted_becomes_the_customers_and_its_sender_a_participant(services, two):
    acme, globex = two
    ticket = mail_ticket(services)
    conf = next(m for m in services.store.outbox(ticket_id=ticket.id)
                if m.kind == "customer/ticket_received")
    held = deliver(services, customer_mail(f"Re: [{ticket.reference}] Printer is on fire",
                                           "I am Jane's colleague: it is out now.",
                                           sender="Ken <ken@customer.test>",
                                           In_Reply_To=f"<{conf.message_id}>"),
                   mail_from="ken@customer.test")
    assert "held as internal note" in held.reason
    [comment] = [c for c in acme.get(f"/api/agent/tickets/{ticket.reference}").json()["comments"]
                 if c["held_reason"]]
    path = f"/api/agent/tickets/{ticket.reference}/comments/{comment['id']}/accept"
    assert globex.post(path).status_code == 404  # another workspace reaches nothing
    r = acme.post(path)
    assert r.status_code == 200 and r.json()["internal"] is False
    assert r.json()["author_kind"] == "customer"
    assert acme.post(path).status_code == 409  # once
    detail = acme.get(f"/api/agent/tickets/{ticket.reference}").json()
    assert "ken@customer.test" in [p["email"] for p in detail["participants"]]
    again = deliver(services, customer_mail(f"Re: [{ticket.reference}] Printer is on fire",
                                            "And now it works again.",
                                            sender="Ken <ken@customer.test>",
                                            In_Reply_To=f"<{conf.message_id}>"),
                    mail_from="ken@customer.test")
    assert again.reason.startswith("reply on")  # accepted without review from now on
