"""Hostile input at the web side (issue 7): tampered and replayed links, attachment names that
try to leave the blob store, header injection into our mail, script in customer content, and
oversized or dribbled HTTP requests. Each test plays the attacker against the real app or the
running gateway and asserts what the victim would (not) see."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from gateway.intake import NewFile, Person, TicketRequest
from gateway.tokens import feedback_token, tracking_token
from portal.app import create_app
from storage.models import Attachment, Comment, Ticket
from tests.conftest import customer_mail
from tests.test_agent_api import Api, add_globex, give_key
from tests.test_console import logged_in, set_password
from tests.test_pipeline import deliver
from tests.test_portal_common import client, csrf_of

SECRET = "test-secret-key-0123456789"
INVALID = "Email me a fresh link"
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


# -- helpers --------------------------------------------------------------------------------------

def _open(services, slug: str, email: str, subject: str, description: str,
          files: tuple[NewFile, ...] = ()) -> Ticket:
    ws = services.store.workspace_by_slug(slug)
    with services.store.tx() as s:
        return services.intake.open_ticket(s, TicketRequest(
            workspace_id=ws.id, customer=Person(email.split("@")[0].title(), email),
            subject=subject, description=description, channel="portal", files=files))


def _flip(token: str, index: int) -> str:
    """The token with one character changed (high bits too: base64 padding bits are moot)."""
    c = token[index]
    return token[:index] + ("A" if c not in "Aa" else "z") + token[index + 1:]


def _nothing_of(r, *secrets: str) -> None:
    for text in secrets:
        assert text not in r.text, f"{text!r} leaked into a {r.status_code} answer"


def _refused_page(r, *secrets: str) -> None:
    """The "email me a fresh link" page (403) or a plain 404, and none of the tickets' data."""
    assert r.status_code in (403, 404), r.status_code
    if r.status_code == 403:
        assert INVALID in r.text
    _nothing_of(r, *secrets)


class _ActiveMarkup(HTMLParser):
    """Collects anything a browser would run: inline or foreign scripts, on* handlers,
    javascript:/data: URLs and embedded documents."""

    URL_ATTRS = {"href", "src", "action", "formaction", "xlink:href", "data", "srcdoc"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script" and not (values.get("src") or "").startswith("/static/"):
            self.found.append(f"<script {values}>")
        if tag in ("iframe", "object", "embed", "base"):
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            v = re.sub(r"[\s\x00-\x1f]", "", (value or "")).lower()
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}={value!r}>")
            elif name in self.URL_ATTRS and v.startswith(("javascript:", "vbscript:",
                                                           "data:text/html")):
                self.found.append(f"<{tag} {name}={value!r}>")


def active_markup(html: str) -> list[str]:
    parser = _ActiveMarkup()
    parser.feed(html)
    return parser.found


def _safe_download(r) -> None:
    """A download, never rendered, under a filename that cannot break out of its header."""
    assert r.status_code == 200
    disposition = r.headers["content-disposition"]
    m = re.fullmatch(r'attachment; filename="([A-Za-z0-9._-]+)"; '
                     r"filename\*=UTF-8''([A-Za-z0-9%._~-]+)", disposition)
    assert m, disposition
    name = urllib.parse.unquote(m.group(2))
    assert not set(name) & {"/", "\\", "\x00", "\r", "\n", '"'} and len(name) <= 255, name
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in r.headers["content-security-policy"]


# -- 1. tracking and feedback tokens ---------------------------------------------------------------

@pytest.fixture
def three(services):
    """Jane's and Bob's tickets at acme, and Gina's at globex with Jane's number (TKT-0001)."""
    add_globex(services)
    jane = _open(services, "acme", "jane@customer.test", "Jane printer", "JANE-SECRET-1")
    bob = _open(services, "acme", "bob@customer.test", "Bob payroll", "BOB-SECRET-2",
                (NewFile("bob.txt", "text/plain", b"BOB-FILE"),))
    gina = _open(services, "globex", "gina@customer.test", "Globex merger", "GLOBEX-SECRET-3")
    assert jane.reference == gina.reference == "TKT-0001"
    return jane, bob, gina


def test_tampered_or_misapplied_tracking_tokens_show_no_ticket(services, three):
    jane, bob, gina = three
    secrets = ("JANE-SECRET-1", "BOB-SECRET-2", "GLOBEX-SECRET-3", "Bob payroll",
               "Globex merger")
    token = tracking_token(SECRET, jane.id, "jane@customer.test")
    c = client(services)
    _refused_page(c.get(f"/portal/acme/tickets/{bob.reference}?t={token}"), *secrets)
    _refused_page(c.get(f"/portal/globex/tickets/TKT-0001?t={token}"), *secrets)
    payload, stamp, signature = token.split(".")
    for index in (0, len(payload) // 2, len(payload) + 2, len(token) - len(signature),
                  len(token) - len(signature) // 2):
        _refused_page(c.get(f"/portal/acme/tickets/TKT-0001?t={_flip(token, index)}"), *secrets)
    for bad in (token[:-3], token + "x", f"{payload}.{stamp}.", "", "."):
        _refused_page(c.get("/portal/acme/tickets/TKT-0001", params={"t": bad}), *secrets)
    forged = tracking_token("another-installation-secret", bob.id, "bob@customer.test")
    _refused_page(c.get(f"/portal/acme/tickets/{bob.reference}?t={forged}"), *secrets)
    as_feedback = feedback_token(SECRET, jane.id, "jane@customer.test")
    _refused_page(c.get(f"/portal/acme/tickets/TKT-0001?t={as_feedback}"), *secrets)
    assert "wk_ticket" not in c.cookies  # no refused link left a session behind
    ok = c.get(f"/portal/acme/tickets/TKT-0001?t={token}")  # the control: the link itself works
    assert ok.status_code == 200 and "JANE-SECRET-1" in ok.text
    _nothing_of(ok, *secrets[1:])


def test_public_json_api_answers_only_the_exact_token(services, three):
    jane, bob, _ = three
    token = tracking_token(SECRET, jane.id, "jane@customer.test")
    c = client(services)
    secrets = ("JANE-SECRET-1", "BOB-SECRET-2", "GLOBEX-SECRET-3", "Jane printer")
    wrong_email = tracking_token(SECRET, bob.id, "jane@customer.test")  # Bob's id, Jane's address
    for bad in (_flip(token, 0), _flip(token, len(token) - 20), token[:-2], "",
                feedback_token(SECRET, jane.id, "jane@customer.test"), wrong_email,
                tracking_token("another-installation-secret", jane.id, "jane@customer.test")):
        r = c.get("/api/public/tickets", params={"t": bad})
        assert r.status_code == 404 and r.json() == {"error": "the link is not valid or has "
                                                              "expired"}
        _nothing_of(r, *secrets)
    r = c.get("/api/public/tickets", params={"t": token})
    assert r.status_code == 200 and r.json()["messages"][0]["body"] == "JANE-SECRET-1"
    _nothing_of(r, *secrets[1:3])


def test_feedback_page_refuses_tracking_and_foreign_tokens(services, three):
    jane, bob, gina = three
    c = client(services)
    secrets = ("Jane printer", "Bob payroll", "Globex merger", "TKT-0002")
    for slug, token in (
            ("acme", tracking_token(SECRET, jane.id, "jane@customer.test")),
            ("acme", _flip(feedback_token(SECRET, jane.id, "jane@customer.test"), 3)),
            ("globex", feedback_token(SECRET, jane.id, "jane@customer.test")),  # acme's, at globex
            ("acme", feedback_token(SECRET, gina.id, "gina@customer.test")),  # and the reverse
            ("acme", feedback_token(SECRET, bob.id, "jane@customer.test"))):
        r = c.get(f"/portal/{slug}/feedback", params={"t": token})
        assert r.status_code == 403, (slug, r.status_code)
        _nothing_of(r, *secrets)
        page = c.get("/portal/acme/submit")  # any CSRF token: the link must fail first
        r = c.post(f"/portal/{slug}/feedback", data={"t": token, "rating": "1",
                                                     "csrf_token": csrf_of(page.text)})
        assert r.status_code == 403
    with services.store.read() as s:
        from storage.models import CSATRating
        assert list(s.exec(select(CSATRating))) == []


def test_a_ticket_cookie_replayed_elsewhere_opens_nothing(services, three):
    jane, bob, _ = three
    c = client(services)
    token = tracking_token(SECRET, jane.id, "jane@customer.test")
    c.get(f"/portal/acme/tickets/TKT-0001?t={token}", follow_redirects=False)
    cookie = c.cookies["wk_ticket"]
    with services.store.read() as s:
        bob_file = s.exec(select(Attachment).where(Attachment.ticket_id == bob.id)).one()
    thief = client(services)
    jar = {"Cookie": f"wk_ticket={cookie}"}
    secrets = ("BOB-SECRET-2", "Bob payroll", "GLOBEX-SECRET-3", "Globex merger")
    _refused_page(thief.get(f"/portal/acme/tickets/{bob.reference}", headers=jar), *secrets)
    _refused_page(thief.get("/portal/globex/tickets/TKT-0001", headers=jar), *secrets)
    r = thief.get(f"/portal/acme/tickets/{bob.reference}/files/{bob_file.id}", headers=jar)
    assert r.status_code == 404 and b"BOB-FILE" not in r.content
    r = thief.get(f"/portal/acme/tickets/TKT-0001/files/{bob_file.id}", headers=jar)
    assert r.status_code == 404 and b"BOB-FILE" not in r.content  # a file of another ticket
    page = thief.get("/portal/acme/submit")
    r = thief.post(f"/portal/acme/tickets/{bob.reference}/reply", headers=jar,
                   data={"csrf_token": csrf_of(page.text), "message": "I am Bob now"})
    _refused_page(r, *secrets)
    with services.store.read() as s:
        assert not list(s.exec(select(Comment).where(Comment.ticket_id == bob.id)))
    _refused_page(thief.get(f"/portal/acme/tickets/TKT-0001?t={cookie}"), *secrets)  # not a link
    assert thief.get("/api/public/tickets", params={"t": cookie}).status_code == 404
    own = thief.get("/portal/acme/tickets/TKT-0001", headers=jar)  # where it was issued: works
    assert own.status_code == 200 and "JANE-SECRET-1" in own.text


# -- 2. attachment names that try to leave the blob store --------------------------------------

EVIL_NAMES = {
    "passwd": 'filename="../../etc/passwd"',
    "win.ini": "filename*=utf-8''..%5C..%5Cwin.ini",
    "path.txt": 'filename="/abs/path.txt"',
    "nulbyte": "filename*=utf-8''nulbyte%00.txt%00.exe",
    "long": f'filename="{"L" * 296}.txt"',
}


def _mail_with_names(sender: str) -> bytes:
    parts = [b"--XYZ\r\nContent-Type: text/plain\r\n\r\nFiles attached.\r\n"]
    for i, (_, disposition) in enumerate(EVIL_NAMES.items()):
        parts.append((f"--XYZ\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; "
                      f"{disposition}\r\n\r\npayload number {i}\r\n").encode())
    head = (f"From: {sender}\r\nTo: support@acme.test\r\nSubject: Odd file names\r\n"
            "Message-ID: <names@customer.test>\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="XYZ"\r\n\r\n').encode()
    return head + b"".join(parts) + b"--XYZ--\r\n"


def _names_under(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*")} if folder.exists() else set()


def _planted(names: set[str]) -> set[str]:
    return {n for n in names if any(k in n.lower() for k in ("passwd", "win.ini", "path.txt",
                                                             "nulbyte", "llllllll"))}


@SQLITE_ONLY
def test_attachment_names_cannot_escape_the_blob_store(gateway, sink, tmp_path):
    tmp_before = set(os.listdir("/tmp"))
    parent_before = set(os.listdir(tmp_path.parent))
    gateway.send(_mail_with_names("jane@customer.test"), "jane@customer.test",
                 ["support@acme.test"])
    confirmation = sink.wait_for(lambda m: "jane@customer.test" in str(m["To"]))
    blobs = gateway.data_dir / "blobs"
    for path in gateway.data_dir.rglob("*"):
        if path.is_file() and blobs in path.parents:
            assert re.fullmatch(r"[0-9a-f]{64}", path.name), path
    assert _planted(_names_under(tmp_path)) == set()  # gateway's cwd and data dir
    assert _planted(set(os.listdir("/tmp")) - tmp_before) == set()
    assert _planted(set(os.listdir(tmp_path.parent)) - parent_before) == set()
    assert not Path("/abs/path.txt").exists()

    svc = gateway.services()
    try:
        give_key(svc, "alex@acme.test", "wk_security-test-key")
    finally:
        svc.close()
    api = httpx.Client(base_url=gateway.base_url,
                       headers={"Authorization": "Bearer wk_security-test-key"})
    files = api.get("/api/agent/tickets/TKT-0001").json()["attachments"]
    assert len(files) == len(EVIL_NAMES)
    for f in files:
        assert not set(f["filename"]) & {"/", "\\", "\x00"} and len(f["filename"]) <= 255
        r = api.get(f["url"])
        _safe_download(r)
        assert r.content.startswith(b"payload number")

    link = re.search(r"http://127\.0\.0\.1:\d+/portal/acme/tickets/TKT-0001\?t=[\w.-]+",
                     confirmation.get_body(("plain",)).get_content()).group(0)
    portal = httpx.Client(follow_redirects=True)
    page = portal.get(link)
    hrefs = sorted(set(re.findall(r'href="(/portal/acme/tickets/TKT-0001/files/\d+)"', page.text)))
    assert len(hrefs) == len(EVIL_NAMES)
    for href in hrefs:
        _safe_download(portal.get(gateway.base_url + href))


# -- 3. header injection into our own mail -------------------------------------------------------

def _no_injection(sink, customer: str) -> None:
    sink.wait_for(lambda m: customer in str(m["To"]))
    time.sleep(1.0)  # the assignee's notification, or anything a Bcc would add, arrives too
    with sink.lock:
        envelopes, raws = list(sink.envelopes), list(sink.raws)
    assert envelopes and all("evil.test" not in r for _, rcpts in envelopes for r in rcpts)
    for raw in raws:
        head = raw.split(b"\r\n\r\n", 1)[0]
        assert not re.search(rb"^(bcc|cc):", head, re.I | re.M), head
    mine = [m for m in sink.to(customer)]
    assert len(mine) == 1 and mine[0]["Bcc"] is None
    assert "\n" not in str(mine[0]["Subject"]) and "\r" not in str(mine[0]["Subject"])
    assert [a.addr_spec for a in mine[0]["To"].addresses] == [customer]


@SQLITE_ONLY
def test_crlf_in_portal_name_and_subject_adds_no_recipient(gateway, sink):
    web = httpx.Client(base_url=gateway.base_url)
    page = web.get("/portal/acme/submit")
    r = web.post("/portal/acme/submit", data={
        "csrf_token": csrf_of(page.text), "name": "Jane\r\nBcc: victim@evil.test",
        "email": "jane@customer.test", "subject": "Broken\r\nBcc: victim@evil.test\r\n\r\nbody",
        "description": "Hello", "type": "Bug Report"}, files=[("x", ("", b""))])
    assert r.status_code == 200 and "TKT-0001" in r.text
    _no_injection(sink, "jane@customer.test")


@SQLITE_ONLY
def test_crlf_in_mailed_name_and_subject_adds_no_recipient(gateway, sink):
    raw = (b"From: =?utf-8?q?Mallory=0D=0ABcc=3A_victim=40evil=2Etest?= <mallory@customer.test>\r\n"
           b"To: support@acme.test\r\nBcc: victim2@evil.test\r\n"
           b"Subject: =?utf-8?q?Help=0D=0ABcc=3A_victim3=40evil=2Etest=0D=0A=0D=0Ax?=\r\n"
           b"Message-ID: <crlf@customer.test>\r\n\r\nPlease help.\r\n")
    gateway.send(raw, "mallory@customer.test", ["support@acme.test"])
    _no_injection(sink, "mallory@customer.test")


# -- 4. script in customer content ---------------------------------------------------------------

SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert("svg")'
       b"</script></svg>")
HOSTILE_HTML = ('<p>Hi</p><script>alert("s1")</script><img src=x onerror=alert("s2")>'
                '<a href="javascript:alert(3)">click</a><a href=" JaVaScRiPt:alert(4)">two</a>'
                '<svg onload=alert(5)></svg><iframe src="javascript:alert(6)"></iframe>'
                '<form action="javascript:alert(7)"><button>go</button></form>'
                '<div style="background:url(javascript:alert(8))">styled</div>')


def _hostile_mail(subject: str, message_id: str):
    msg = customer_mail(subject, "plain fallback", sender='"<img src=x onerror=alert(1)>" '
                        "<mallory@customer.test>")
    msg.replace_header("Message-ID", message_id)
    msg.clear_content()
    msg.set_content(HOSTILE_HTML, subtype="html")
    msg.add_attachment(SVG, maintype="image", subtype="svg+xml", filename="chart.svg")
    return msg


def test_script_in_mail_is_inert_on_every_page_that_shows_it(services):
    first = _hostile_mail('<script>alert("subj")</script>Help', "<x1@customer.test>")
    row = deliver(services, first, mail_from="mallory@customer.test")
    assert row.outcome == "new_ticket"
    reply = _hostile_mail("Re: [TKT-0001] more", "<x2@customer.test>")
    assert deliver(services, reply, mail_from="mallory@customer.test").outcome == "comment"
    ticket = services.store.ticket(row.ticket_id)

    portal = client(services)
    page = portal.get(f"/portal/acme/tickets/TKT-0001?t="
                      f"{tracking_token(SECRET, ticket.id, 'mallory@customer.test')}")
    assert page.status_code == 200 and "click" in page.text
    assert active_markup(page.text) == []
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text  # the name is shown, as text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    svg_links = re.findall(r'href="(/portal/acme/tickets/TKT-0001/files/\d+)"', page.text)
    assert svg_links
    for href in svg_links:
        r = portal.get(href)
        _safe_download(r)
        assert r.headers["content-disposition"].startswith("attachment;")

    set_password(services, "alex@acme.test")
    app = create_app(services)
    console = logged_in(app, "alex@acme.test")
    for path in ("/console/tickets", "/console/tickets/TKT-0001", "/console/"):
        html = console.get(path).text
        assert active_markup(html) == [], path
    html = console.get("/console/tickets/TKT-0001").text
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "&lt;script&gt;" in html
    with services.store.read() as s:
        svgs = list(s.exec(select(Attachment).where(Attachment.filename == "chart.svg")))
    assert len(svgs) == 2
    _safe_download(console.get(f"/console/tickets/TKT-0001/attachments/{svgs[0].id}"))

    give_key(services, "alex@acme.test", "wk_xss-key")
    api = Api(app, "wk_xss-key")
    r = api.get("/api/agent/tickets/TKT-0001")
    assert r.headers["content-type"].startswith("application/json")
    detail = r.json()
    for text in [detail["description"], *(c["body"] for c in detail["comments"])]:
        assert not re.search(r"<\s*/?\s*[a-z]", text, re.I), text  # plain text, no tags
    for f in [*detail["attachments"], *(a for c in detail["comments"] for a in c["attachments"])]:
        _safe_download(api.get(f["url"]))


# -- 6. oversized and dribbled HTTP requests ------------------------------------------------------

def _rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))


def _raw_http(port: int, head: bytes, body_chunks, *, read_timeout: float = 30) -> bytes:
    """Sends the head and then the body (until the server hangs up); the server's answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        sock.sendall(head)
        with contextlib.suppress(OSError):
            for chunk in body_chunks:
                sock.sendall(chunk)
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and len(answer) > 12:
                    break
        return answer


def _post_head(extra: str) -> bytes:
    return ("POST /portal/acme/submit HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: multipart/form-data; boundary=B\r\n" + extra + "\r\n").encode()


FIFTY_MB = 50 * 1024 * 1024
MEGABYTE = b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n\r\n" \
    .ljust(1024 * 1024, b"x")


@SQLITE_ONLY
def test_fifty_megabyte_posts_are_refused_without_being_held(gateway):
    pid = gateway.proc.pid
    httpx.get(gateway.base_url + "/portal/acme/submit")  # warm the page's code paths
    before = _rss_kb(pid)
    declared = _raw_http(gateway.http_port, _post_head(f"Content-Length: {FIFTY_MB}\r\n"),
                         [MEGABYTE] * 50)
    assert declared.startswith(b"HTTP/1.1 413"), declared[:200]

    def chunked():
        for _ in range(50):
            yield b"%x\r\n%s\r\n" % (len(MEGABYTE), MEGABYTE)
        yield b"0\r\n\r\n"
    streamed = _raw_http(gateway.http_port, _post_head("Transfer-Encoding: chunked\r\n"),
                         chunked())
    assert streamed.startswith(b"HTTP/1.1 413"), streamed[:200]
    growth_mb = (_rss_kb(pid) - before) / 1024
    assert growth_mb < 20, f"the gateway grew by {growth_mb:.0f} MB for a 50 MB body"
    assert httpx.get(gateway.base_url + "/portal/acme/submit").status_code == 200


def _lie(gateway, length: Callable[[int], str], body: bytes) -> bytes:
    """The submit form, filled in with a valid CSRF token, under the framing header(s)
    `length` makes of its true size, followed by `body`."""
    web = httpx.Client(base_url=gateway.base_url)
    form, ctype = _encoded_form(csrf_of(web.get("/portal/acme/submit").text))
    cookie = "; ".join(f"{k}={v}" for k, v in web.cookies.items())
    head = (f"POST /portal/acme/submit HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n"
            f"Content-Type: {ctype}\r\n{length(len(form))}\r\n\r\n").encode()
    return _raw_http(gateway.http_port, head, [form, body])


def _tickets(gateway) -> list[Ticket]:
    svc = gateway.services()
    try:
        with svc.store.read() as s:
            return list(s.exec(select(Ticket)))
    finally:
        svc.close()


@SQLITE_ONLY
def test_malformed_content_lengths_are_refused_with_400(gateway):
    for length in (lambda n: "Content-Length: -1", lambda n: "Content-Length: lots",
                   lambda n: f"Content-Length: 5\r\nContent-Length: {n}"):
        answer = _lie(gateway, length, b"")
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert _tickets(gateway) == []


@SQLITE_ONLY
def test_a_content_length_shorter_than_the_body_is_refused(gateway):
    short = _lie(gateway, lambda n: f"Content-Length: {n - 40}", b"GARBAGE" * 100)
    assert short.startswith(b"HTTP/1.1 400"), short[:200]
    assert _tickets(gateway) == []


def _encoded_form(csrf: str) -> tuple[bytes, str]:
    request = httpx.Request("POST", "http://x/", data={
        "csrf_token": csrf, "name": "Jane", "email": "jane@customer.test",
        "subject": "Truncated", "description": "The end of this is cut off by the lie.",
        "type": "Bug Report"}, files=[("x", ("", b""))])
    return request.read(), request.headers["content-type"]


@SQLITE_ONLY
def test_a_client_dribbling_headers_does_not_hold_up_others(gateway):
    stop = threading.Event()

    def dribble(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            for byte in b"GET /portal/acme/submit HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1":
                if stop.wait(0.3):
                    return
                sock.sendall(bytes([byte]))

    slow = [socket.create_connection(("127.0.0.1", gateway.http_port)) for _ in range(20)]
    threads = [threading.Thread(target=dribble, args=(s,), daemon=True) for s in slow]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        started = time.monotonic()
        for _ in range(3):
            assert httpx.get(gateway.base_url + "/portal/acme/submit", timeout=10
                             ).status_code == 200
        assert time.monotonic() - started < 5.0
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        for s in slow:
            s.close()
