"""The tracking page, its replies and files, and the token-bound JSON API."""

from __future__ import annotations

import asyncio
import re
import time

from sqlmodel import select

from gateway.intake import Person, TicketRequest
from gateway.tokens import feedback_token, tracking_token
from storage.models import Attachment, Comment, Notification, Ticket, Workspace
from tests.test_portal_common import PNG, client, csrf_of, submit

SECRET = "test-secret-key-0123456789"


def _open(c) -> tuple[str, str]:
    r = submit(c, files=[("attachments", ("shot.png", PNG, "image/png"))])
    link = re.search(r'href="(http://127\.0\.0\.1:8000/portal/acme/tickets/[^"]+)"', r.text)
    url = link.group(1).replace("http://127.0.0.1:8000", "")
    return url.split("?")[0], url


def test_token_is_swapped_for_a_ticket_cookie_and_leaves_the_address_bar(services):
    c = client(services)
    path, url = _open(c)
    first = c.get(url, follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == path
    assert first.headers["referrer-policy"] == "no-referrer"
    cookie = first.headers["set-cookie"]
    assert "wk_ticket=" in cookie and f"Path={path}" in cookie and "HttpOnly" in cookie
    page = c.get(path)
    assert page.status_code == 200 and "Printer is on fire" in page.text
    assert "Open</span>" in page.text and "shot.png" in page.text
    other = client(services).get(path)  # no cookie, no token: nothing shown
    assert other.status_code == 403 and "Printer" not in other.text


def test_internal_notes_never_show_and_resolution_does(services):
    c = client(services)
    path, url = _open(c)
    with services.store.tx() as s:
        t = s.exec(select(Ticket)).one()
        s.add(Comment(ticket_id=t.id, author_kind="agent", author_name="Alex", body="Public ok"))
        s.add(Comment(ticket_id=t.id, author_kind="agent", author_name="Alex",
                      body="SECRET internal", internal=True))
        t.status, t.resolution = "resolved", "Replaced the fuser."
        s.add(t)
    html = c.get(url).text
    assert "Public ok" in html and "SECRET" not in html
    assert "Resolved</span>" in html and "Replaced the fuser." in html


def test_reply_with_a_file_reopens_and_notifies_the_assignee(services):
    c = client(services)
    path, url = _open(c)
    with services.store.tx() as s:
        t = s.exec(select(Ticket)).one()
        t.status = "resolved"
        s.add(t)
    html = c.get(url).text
    r = c.post(f"{path}/reply", data={"csrf_token": csrf_of(html), "message": "Still broken"},
               files=[("attachments", ("log.txt", b"line one\n", "text/plain"))],
               follow_redirects=False)
    assert r.status_code == 303
    page = c.get(r.headers["location"]).text
    assert "Still broken" in page and "log.txt" in page and "Open</span>" in page
    with services.store.read() as s:
        t = s.exec(select(Ticket)).one()
        assert t.status == "open"
        kinds = [n.kind for n in s.exec(select(Notification).where(
            Notification.ticket_id == t.id))]
    assert "customer_replied" in kinds


def test_reply_errors_keep_the_text_and_need_csrf(services):
    c = client(services)
    path, url = _open(c)
    html = c.get(url).text
    r = c.post(f"{path}/reply", data={"csrf_token": csrf_of(html), "message": "z" * 5001},
               files=[("x", ("", b""))])
    assert r.status_code == 400 and 'id="message-error"' in r.text and "z" * 5001 in r.text
    r = c.post(f"{path}/reply", data={"message": "no token"}, files=[("x", ("", b""))])
    assert r.status_code == 403 and "no token" in r.text


def test_a_file_that_passed_stays_attached_when_the_reply_has_an_error(services):
    c = client(services)
    path, url = _open(c)
    html = c.get(url).text
    r = c.post(f"{path}/reply", data={"csrf_token": csrf_of(html), "message": ""},
               files=[("attachments", ("log.txt", b"line one\n", "text/plain"))])
    assert r.status_code == 400 and "Please write your reply." in r.text
    kept = re.findall(r'name="upload" value="([^"]+)"', r.text)
    assert len(kept) == 1 and "log.txt (attached)" in r.text
    r = c.post(f"{path}/reply", data={"csrf_token": csrf_of(r.text), "message": "Here it is",
                                      "upload": kept[0]}, follow_redirects=False)
    assert r.status_code == 303
    page = c.get(r.headers["location"]).text
    assert "Here it is" in page and "log.txt" in page


def test_kept_files_count_toward_the_three_a_reply_may_carry(services):
    c = client(services)
    path, url = _open(c)
    html = c.get(url).text
    r = c.post(f"{path}/reply", data={"csrf_token": csrf_of(html), "message": ""},
               files=[("attachments", ("a.txt", b"one\n", "text/plain"))])
    kept = re.findall(r'name="upload" value="([^"]+)"', r.text)
    r = c.post(f"{path}/reply", data={"csrf_token": csrf_of(r.text), "message": "Four files",
                                      "upload": kept[0]},
               files=[("attachments", (f"{n}.txt", b"x\n", "text/plain")) for n in "bcd"])
    assert r.status_code == 400 and "Please attach at most 3 files." in r.text
    assert "Four files" in r.text  # nothing typed is lost
    assert "a.txt (attached)" in r.text  # nor the file kept before


def test_attachments_are_downloads_never_active_content(services):
    c = client(services)
    path, url = _open(c)
    html = c.get(url).text
    href = re.search(r'href="([^"]+/files/\d+)"', html).group(1)
    r = c.get(href)
    assert r.content == PNG
    assert r.headers["content-disposition"].startswith("attachment;")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in r.headers["content-security-policy"]
    assert client(services).get(href).status_code == 404  # without the ticket's cookie


def test_forged_expired_and_other_workspace_tokens_show_nothing(services):
    c = client(services)
    path, _ = _open(c)
    with services.store.read() as s:
        t = s.exec(select(Ticket)).one()
    forged = c.get(f"{path}?t=WzEsImphbmUiXQ.forged.sig")
    assert forged.status_code == 403 and "Printer" not in forged.text
    assert forged.headers["referrer-policy"] == "no-referrer"
    from itsdangerous import URLSafeTimedSerializer
    from itsdangerous.timed import TimestampSigner

    class Old(TimestampSigner):
        def get_timestamp(self):
            return int(time.time()) - 40 * 24 * 3600

    old = URLSafeTimedSerializer(SECRET, salt="workestra.tracking.v1", signer=Old).dumps(
        [t.id, "jane@customer.test"])
    assert c.get(f"{path}?t={old}").status_code == 403
    assert c.get(f"{path}?t={feedback_token(SECRET, t.id, 'jane@customer.test')}"
                 ).status_code == 403
    with services.store.tx() as s:  # a ticket of another workspace, with its valid token
        other = Workspace(slug="other", name="Other")
        s.add(other)
        s.flush()
        theirs = services.intake.open_ticket(s, TicketRequest(
            workspace_id=other.id, customer=Person("Bob", "bob@x.test"), subject="Theirs",
            description="", channel="portal"))
    token = tracking_token(SECRET, theirs.id, "bob@x.test")
    r = c.get(f"/portal/acme/tickets/{theirs.reference}?t={token}")
    assert r.status_code == 403 and "Theirs" not in r.text


def test_fresh_link_form_needs_csrf_and_answers_the_same_either_way(services):
    c = client(services)
    path, _ = _open(c)
    page = c.get(path)
    assert c.post(f"{path}/link", data={}).status_code == 403
    known = c.post(f"{path}/link", data={"csrf_token": csrf_of(page.text)})
    unknown = c.post("/portal/acme/tickets/TKT-9999/link",
                     data={"csrf_token": csrf_of(page.text)})
    assert known.status_code == unknown.status_code == 200
    assert known.text.replace("TKT-0001", "X") == unknown.text.replace("TKT-9999", "X")


def test_public_json_api_is_token_bound_and_privately_cacheable(services):
    c = client(services)
    _, url = _open(c)
    token = url.split("t=")[1]
    r = c.get(f"/api/public/tickets?t={token}")
    assert r.status_code == 200
    assert r.headers["cache-control"] == "private, max-age=10, stale-while-revalidate=60"
    body = r.json()
    assert body["reference"] == "TKT-0001" and body["status_label"] == "Open"
    assert body["messages"][0]["attachments"][0]["filename"] == "shot.png"
    bad = c.get("/api/public/tickets?t=nonsense")
    assert bad.status_code == 404 and "no-store" in bad.headers["cache-control"]


def test_a_kept_session_cookie_still_expires_and_a_forged_one_is_never_kept(services,
                                                                            monkeypatch):
    """A session cookie's signature is checked once and kept; its age, every time."""
    import types

    from gateway.tokens import TRACKING_MAX_AGE
    from portal import tracking

    cookie = tracking._session_signer(services).dumps([7, "jane@customer.test"])
    assert tracking.session_claim(services, cookie) == (7, "jane@customer.test")
    assert tracking.session_claim(services, cookie) == (7, "jane@customer.test")  # kept
    now = time.time()
    monkeypatch.setattr(tracking, "time", types.SimpleNamespace(
        time=lambda: now + TRACKING_MAX_AGE + 5))
    assert tracking.session_claim(services, cookie) is None  # too old, kept or not
    monkeypatch.setattr(tracking, "time", types.SimpleNamespace(time=lambda: now - 60))
    assert tracking.session_claim(services, cookie) is None  # signed "in the future"
    monkeypatch.undo()
    forged = cookie[:-3] + ("abc" if not cookie.endswith("abc") else "xyz")
    kept = tracking._signed.cache_info().currsize
    assert tracking.session_claim(services, forged) is None
    assert tracking.session_claim(services, forged) is None
    assert tracking._signed.cache_info().currsize == kept  # a failure is never kept


def _branded(html: str) -> bool:
    return "Acme Support" in html and "#7c3aed" in html and "acme-logo.svg" in html


def test_a_known_workspaces_404s_carry_its_branding_an_unknown_slugs_do_not(services):
    c = client(services)
    path, url = _open(c)
    c.get(url)  # the ticket's cookie: even its holder gets a branded 404 for a missing file
    for address in ("/portal/acme/tickets/garbage", "/portal/acme/tickets/garbage/files/1",
                    f"{path}/files/999", f"{path}/files/x"):
        r = c.get(address)
        assert r.status_code == 404 and "Page not found" in r.text, address
        assert _branded(r.text), address
        assert 'href="/portal/acme"' in r.text
    for address in ("/portal/nope/tickets/TKT-0001", "/portal/nope/tickets/garbage",
                    "/portal/nope/tickets/TKT-0001/files/1"):
        r = c.get(address)
        assert r.status_code == 404 and "Page not found" in r.text, address
        assert "Acme" not in r.text and "7c3aed" not in r.text and "/portal/acme" not in r.text
    bad = c.post("/portal/acme/tickets/garbage/link", data={})
    assert bad.status_code == 404 and _branded(bad.text)


def test_a_missing_ticket_looks_like_one_you_may_not_see(services):
    c = client(services)
    path, _ = _open(c)  # TKT-0001 exists, with a file
    with services.store.read() as s:
        file_id = s.exec(select(Attachment.id)).one()
    stranger = client(services)  # no cookie for it
    real, missing = stranger.get(path), stranger.get("/portal/acme/tickets/TKT-9999")
    assert real.status_code == missing.status_code == 403
    assert "Printer" not in real.text
    same = (real.text.replace("TKT-0001", "X"), missing.text.replace("TKT-9999", "X"))
    assert _csrf_free(same[0]) == _csrf_free(same[1])
    real_file = stranger.get(f"{path}/files/{file_id}")
    missing_file = stranger.get(f"/portal/acme/tickets/TKT-9999/files/{file_id}")
    assert real_file.status_code == missing_file.status_code == 404
    assert real_file.text == missing_file.text and _branded(real_file.text)


def _csrf_free(html: str) -> str:
    return re.sub(r'name="csrf_token" value="[^"]+"', "", html)


def test_attachment_sizes_read_as_bytes_kb_or_mb(services):
    c = client(services)
    _, url = _open(c)
    html = c.get(url).text
    assert f"shot.png</a> <span class=\"muted\">({len(PNG)} bytes)</span>" in html
    assert "0.1 KB" not in html


def test_pages_say_to_write_to_the_support_email_or_else_the_first_support_address(services):
    c = client(services)
    home = c.get("/portal/acme").text
    assert 'mailto:support@acme.test' in home and "help@acme.test" not in home
    with services.store.tx() as s:
        ws = Workspace(slug="globex", name="Globex")
        s.add(ws)
        s.flush()
        services.store.add_support_address(s, ws.id, "help@globex.test")
        services.store.add_support_address(s, ws.id, "billing@globex.test")
        s.add(Workspace(slug="initech", name="Initech"))
    globex = c.get("/portal/globex").text
    assert "Questions? <a href=\"mailto:help@globex.test\">help@globex.test</a>" in globex
    assert "billing@globex.test" not in globex
    initech = c.get("/portal/initech").text  # no address at all: none is made up
    assert "Questions?" not in initech and "mailto:" not in initech
    assert "our support address" in initech


def test_the_first_support_address_is_read_off_the_event_loop(services, monkeypatch):
    """A page of a workspace without a support email shows its first support address; the
    query for it runs in a thread with the workspace's, never on the loop every request
    shares."""
    with services.store.tx() as s:
        ws = Workspace(slug="globex", name="Globex")
        s.add(ws)
        s.flush()
        services.store.add_support_address(s, ws.id, "help@globex.test")
    on_loop: list[bool] = []
    real = services.store.support_addresses

    def recorded(*args, **kwargs):
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return real(*args, **kwargs)

    monkeypatch.setattr(services.store, "support_addresses", recorded)
    page = client(services).get("/portal/globex").text
    assert "mailto:help@globex.test" in page
    assert on_loop and not any(on_loop)
