"""The portal in a real headless Chromium, driven by labels as a customer would drive it."""

from __future__ import annotations

import http.server
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.tokens import feedback_token
from tests.browser import browser, page  # noqa: F401
from tests.conftest import Running, free_port, start_gateway, stop_gateway
from tests.test_portal_common import PNG

SECRET = "test-secret-key-0123456789"


@pytest.fixture
def gw(tmp_path) -> Iterator[Running]:
    running = start_gateway(tmp_path, f"sqlite:///{tmp_path / 'data' / 'workestra.db'}", None)
    yield running
    stop_gateway(running)


def test_submit_track_reply_and_rate(gw, page, tmp_path):  # noqa: F811
    shot = tmp_path / "screenshot.png"
    shot.write_bytes(PNG)
    page.goto(f"{gw.base_url}/portal/acme/submit")
    page.get_by_role("button", name="Submit request").click()
    assert page.get_by_text("Please enter your name.").is_visible()
    assert page.get_by_label("Email").get_attribute("aria-invalid") == "true"

    page.get_by_label("Name").fill("Jane Customer")
    page.get_by_label("Email").fill("jane@customer.test")
    page.get_by_label("Type").select_option("Bug Report")
    page.get_by_label("Subject").press_sequentially("reset passwords", delay=20)
    suggestion = page.get_by_role("link", name="How to reset your password")
    suggestion.wait_for()
    page.get_by_label("Description").fill("It says my link expired.")
    assert page.get_by_text("24 / 5,000 characters").is_visible()
    page.get_by_label("Attachments").set_input_files(str(shot))
    page.screenshot(path=str(tmp_path / "submit.png"), full_page=True)
    page.get_by_role("button", name="Submit request").click()  # with a file: sent by script

    page.get_by_text("TKT-0001").wait_for()
    page.screenshot(path=str(tmp_path / "confirmation.png"), full_page=True)
    page.get_by_role("link", name="Track Ticket").click()
    page.wait_for_url(re.compile(r"/portal/acme/tickets/TKT-0001$"))  # no token left
    assert page.get_by_role("heading", name="reset passwords").is_visible()
    assert page.get_by_role("link", name="screenshot.png").is_visible()

    page.get_by_label("Your reply").fill("Still broken, sorry.")
    page.get_by_role("button", name="Send reply").click()
    assert page.get_by_text("Your reply was added").is_visible()
    assert page.get_by_text("Still broken, sorry.").is_visible()
    page.screenshot(path=str(tmp_path / "tracking.png"), full_page=True)

    page.goto(f"{gw.base_url}/portal/acme/feedback?t="
              f"{feedback_token(SECRET, 1, 'jane@customer.test')}")
    page.get_by_label("4 stars").check()
    page.get_by_label("Comment").fill("Quick answer")
    page.get_by_role("button", name="Send rating").click()
    assert page.get_by_text("Thank you for your feedback").is_visible()
    page.reload()
    assert page.get_by_text("You have already rated this request").is_visible()


def test_dark_mode_follows_the_browser(gw, browser, tmp_path):  # noqa: F811
    context = browser.new_context(color_scheme="dark")
    try:
        pg = context.new_page()
        pg.goto(f"{gw.base_url}/portal/acme/submit")
        bg = pg.evaluate("getComputedStyle(document.body).backgroundColor")
        assert bg == "rgb(15, 17, 23)"
        pg.screenshot(path=str(tmp_path / "submit-dark.png"), full_page=True)
    finally:
        context.close()


class _Host(http.server.BaseHTTPRequestHandler):
    html = b""

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(self.html)

    def log_message(self, *args):
        pass


def test_widget_and_iframe_on_another_site(gw, page, tmp_path):  # noqa: F811
    """A customer's site on another origin (localhost, not 127.0.0.1: another site, so the
    browser withholds our cookies) embeds the widget; the form works inside it."""
    _Host.html = (f'<!doctype html><title>Shop</title><h1>Shop</h1>'
                  f'<script src="{gw.base_url}/portal/acme/widget.js" async></script>').encode()
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Host)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://localhost:{port}/")
        page.get_by_role("button", name="Support").click()
        frame = page.frame_locator("#workestra-widget-frame")
        frame.get_by_label("Name").fill("Framed Customer")
        frame.get_by_label("Email").fill("framed@customer.test")
        frame.get_by_label("Subject").fill("Asked from the shop")
        # a file: sent by script, whose POST must pass the embed's origin check too
        frame.get_by_label("Attachments").set_input_files(
            _file(Path(tmp_path), "shop.png", _big_png(512 * 1024)))
        frame.get_by_role("button", name="Submit request").click()
        frame.get_by_text("TKT-0001").wait_for()
        assert frame.get_by_role("link", name="Track Ticket").get_attribute("target") == "_blank"
        page.screenshot(path=str(Path(tmp_path) / "widget.png"))
    finally:
        server.shutdown()


def _big_png(size: int) -> bytes:
    """A PNG the allowlist accepts (signature and header), padded to `size` bytes."""
    return (PNG[:33] + b"\x00" * (size - len(PNG))) + PNG[33:]


def _slow_uploads(context, pg, bytes_per_second: int):
    """Chromium's own network throttling, so a loopback upload lasts long enough to watch.
    Returns a function that lifts it again, so the rest goes at loopback speed once the
    progress has been seen."""
    cdp = context.new_cdp_session(pg)
    cdp.send("Network.enable")

    def throttle(rate: int) -> None:
        cdp.send("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": rate})

    throttle(bytes_per_second)
    return lambda: throttle(-1)


def _spoken_progress(status, timeout: float = 10) -> int:
    """The first "Uploading N%" the live status says with N strictly between 0 and 100:
    progress, not just a start and an end (polled here: the page's CSP forbids the eval
    that wait_for_function needs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.fullmatch(r"Uploading (\d+)%", status.text_content() or "")
        if m and 0 < int(m.group(1)) < 100:
            return int(m.group(1))
        time.sleep(0.05)
    return -1


def _fill_request(pg, file: Path) -> None:
    pg.get_by_label("Name").fill("Jane Customer")
    pg.get_by_label("Email").fill("jane@customer.test")
    pg.get_by_label("Subject").fill("Logs from the crash")
    pg.get_by_label("Attachments").set_input_files(file)


def _file(folder: Path, name: str, data: bytes) -> Path:
    """A file on disk: Chromium reads it itself (a buffer would cross Playwright's pipe as
    base64, seconds for a few MB)."""
    (folder / name).write_bytes(data)
    return folder / name


def test_upload_progress_then_the_page_the_post_would_show(gw, browser, tmp_path):  # noqa: F811
    """With files chosen, the form goes by XMLHttpRequest: a labelled progress bar and a spoken
    percentage while it uploads, then the same confirmation, error and tracking pages as the
    plain post, in light and dark."""
    big = _big_png(3 * 1024 * 1024)
    for scheme in ("light", "dark"):
        context = browser.new_context(color_scheme=scheme)
        try:
            pg = context.new_page()
            pg.goto(f"{gw.base_url}/portal/acme/submit")
            _fill_request(pg, _file(tmp_path, f"crash-{scheme}.png", big))
            # 3 MB at 500 kB/s would take 6 s: the page speaks a percentage after 0.5 s, well
            # before the end; once it has, the throttle is lifted
            unthrottle = _slow_uploads(context, pg, 500_000)
            pg.get_by_role("button", name="Submit request").click()
            bar = pg.get_by_role("progressbar", name="Upload progress")
            bar.wait_for()
            said = _spoken_progress(pg.locator("#submit-progress-status"))
            assert 0 < said < 100, said
            assert said <= float(bar.get_attribute("value") or 0)  # the bar moved too
            assert pg.get_by_role("button", name="Submit request").is_disabled()
            pg.screenshot(path=str(tmp_path / f"upload-progress-{scheme}.png"), full_page=True)
            unthrottle()
            pg.get_by_text("Thank you, we received your request").wait_for(timeout=20_000)
            reference = "TKT-0001" if scheme == "light" else "TKT-0002"
            assert pg.get_by_text(reference).is_visible()
            pg.screenshot(path=str(tmp_path / f"upload-confirmation-{scheme}.png"),
                          full_page=True)
            pg.get_by_role("link", name="Track Ticket").click()
            pg.wait_for_url(re.compile(rf"/portal/acme/tickets/{reference}$"))
            assert pg.get_by_role("link", name=f"crash-{scheme}.png").is_visible()
            assert pg.get_by_text("(3.0 MB)").is_visible()
        finally:
            context.close()

    # the reply form: an error comes back as the plain post's page, and the form still works
    context = browser.new_context()
    try:
        pg = context.new_page()
        pg.goto(f"{gw.base_url}/portal/acme/submit")
        _fill_request(pg, _file(tmp_path, "first.png", PNG))
        pg.get_by_role("button", name="Submit request").click()
        pg.get_by_role("link", name="Track Ticket").click()
        pg.wait_for_url(re.compile(r"/portal/acme/tickets/TKT-0003$"))
        files = pg.get_by_role("button", name=re.compile("^Attachments"))
        files.set_input_files(_file(tmp_path, "empty-reply.png", PNG))
        pg.get_by_role("button", name="Send reply").click()
        pg.get_by_text("Please write your reply.").wait_for()  # the page, written in place
        assert pg.get_by_label("Your reply").get_attribute("aria-invalid") == "true"
        pg.get_by_label("Your reply").fill("Here is the second log.")
        assert pg.get_by_text("23 / 5,000 characters").is_visible()  # portal.js ran again
        files.set_input_files(_file(tmp_path, "second.png", big))
        pg.get_by_role("button", name="Send reply").click()
        pg.wait_for_url(re.compile(r"/portal/acme/tickets/TKT-0003\?sent=1#latest$"))
        assert pg.get_by_text("Your reply was added").is_visible()
        latest = pg.locator("#latest")
        assert latest.get_by_text("Here is the second log.").is_visible()
        assert latest.get_by_role("link", name="second.png").is_visible()
    finally:
        context.close()


def test_files_are_sent_without_javascript_too(gw, browser, tmp_path):  # noqa: F811
    context = browser.new_context(java_script_enabled=False)
    try:
        pg = context.new_page()
        pg.goto(f"{gw.base_url}/portal/acme/submit")
        _fill_request(pg, _file(tmp_path, "plain.png", _big_png(1024 * 1024)))
        assert not pg.get_by_role("progressbar").count()
        pg.get_by_role("button", name="Submit request").click()
        assert pg.get_by_text("TKT-0001").is_visible()
        pg.get_by_role("link", name="Track Ticket").click()
        assert pg.get_by_role("link", name="plain.png").is_visible()
    finally:
        context.close()


def test_a_request_too_large_shows_the_plain_posts_page(gw, browser, tmp_path):  # noqa: F811
    """Three 14 MB files pass the 40 MiB a form may carry: without the script, refused from the
    declared length before the body is read; with it, never sent (each is past 10 MB)."""
    big = []
    for i in range(3):  # files on disk: Chromium reads them itself, nothing goes over the pipe
        big.append(tmp_path / f"part{i}.png")
        big[-1].write_bytes(_big_png(14 * 1024 * 1024))
    alerts = []
    for script in (True, False):
        context = browser.new_context(java_script_enabled=script)
        try:
            pg = context.new_page()
            pg.goto(f"{gw.base_url}/portal/acme/submit")
            _fill_request(pg, _file(tmp_path, "one.png", PNG))
            pg.get_by_label("Attachments").set_input_files(big)
            pg.get_by_role("button", name="Submit request").click()
            alert = pg.get_by_role("alert")
            alert.wait_for(timeout=20_000)
            alerts.append(alert.inner_text())
            assert pg.get_by_role("heading", name="Submit a request").is_visible()
        finally:
            context.close()
    assert alerts == [" ".join(f"part{i}.png: larger than 10 MB." for i in range(3)),
                      "The request is too large."]


def _requests(pg) -> list[str]:
    """Every request the page makes from now on, as "METHOD url"."""
    seen: list[str] = []
    pg.on("request", lambda r: seen.append(f"{r.method} {r.url}"))
    return seen


def test_files_the_server_would_refuse_are_named_before_sending(gw, browser, tmp_path):  # noqa: F811
    """An 11 MB file is named next to the field in the server's sentence, with nothing sent and
    nothing typed lost; taking it away clears the error and the form goes. Type and count
    rules hold on the tracking page's reply form too."""
    from playwright.sync_api import expect

    huge = _file(tmp_path, "huge.png", _big_png(11 * 1024 * 1024))
    for scheme in ("light", "dark"):
        context = browser.new_context(color_scheme=scheme)
        try:
            pg = context.new_page()
            pg.goto(f"{gw.base_url}/portal/acme/submit")
            typed = {"Name": "Jane Customer", "Email": "jane@customer.test",
                     "Subject": "Printer log attached", "Description": "The log is big."}
            with pg.expect_response(re.compile(r"/api/public/kb/search\?")):  # deflection
                for label, value in typed.items():
                    pg.get_by_label(label).fill(value)
            sent = _requests(pg)
            files = pg.get_by_label("Attachments")
            files.set_input_files(huge)
            error = pg.locator("#attachments-error")
            assert error.inner_text() == "huge.png: larger than 10 MB."
            assert error.get_attribute("role") == "alert"
            assert files.get_attribute("aria-describedby") == "attachments-hint attachments-error"
            assert files.get_attribute("aria-invalid") == "true"
            # inside the field, as the server places it
            assert pg.locator(".field", has=files).locator("#attachments-error").count() == 1
            pg.get_by_role("button", name="Submit request").click()
            # the script's submit handler ran and stopped the post: it hands the focus back to
            # the field (it does so only when it prevents the post)
            expect(files).to_be_focused()
            assert sent == []
            assert pg.get_by_role("progressbar").count() == 0
            assert error.is_visible()
            assert {label: pg.get_by_label(label).input_value() for label in typed} == typed
            pg.screenshot(path=str(tmp_path / f"file-error-{scheme}.png"), full_page=True)

            files.set_input_files([])
            assert error.count() == 0
            assert files.get_attribute("aria-describedby") == "attachments-hint"
            assert files.get_attribute("aria-invalid") is None
            assert sent == []  # still nothing, all the while since the refused click
            pg.get_by_role("button", name="Submit request").click()
            pg.get_by_text("Thank you, we received your request").wait_for()
            assert any(r.startswith("POST ") and r.endswith("/portal/acme/submit") for r in sent)
        finally:
            context.close()

    context = browser.new_context()
    try:
        pg = context.new_page()
        pg.goto(f"{gw.base_url}/portal/acme/submit")
        _fill_request(pg, _file(tmp_path, "fake.png", b"not a picture"))
        pg.get_by_role("button", name="Submit request").click()  # the server's error page
        error = pg.locator("#attachments-error")
        server_says = "fake.png: the content is not recognised, not image/png"
        assert error.inner_text() == server_says
        files = pg.get_by_label("Attachments")
        names = [_file(tmp_path, f"shot{i}.png", PNG) for i in range(4)]
        files.set_input_files(names)
        assert error.inner_text() == "At most 3 files can be attached."
        files.set_input_files(names[:3])
        assert error.inner_text() == server_says  # the server's word stands until it is asked
        _fill_request(pg, _file(tmp_path, "ok.png", PNG))
        pg.get_by_role("button", name="Submit request").click()
        pg.get_by_role("link", name="Track Ticket").click()
        pg.wait_for_url(re.compile(r"/portal/acme/tickets/TKT-0003$"))
        pg.get_by_label("Your reply").fill("A program and a page.")
        sent = _requests(pg)
        files = pg.get_by_role("button", name=re.compile("^Attachments"))
        files.set_input_files(
            [_file(tmp_path, "tool.exe", b"MZ"), _file(tmp_path, "notes.rtf", b"{\\rtf1}")])
        pg.get_by_role("button", name="Send reply").click()
        expect(files).to_be_focused()  # the submit handler ran and stopped the post
        assert sent == []
        assert pg.locator("#attachments-error").inner_text() == (
            "tool.exe: programs and scripts cannot be attached. notes.rtf: files ending .rtf "
            "are not accepted; allowed: csv, doc, docx, gif, jpeg, jpg, pdf, png, svg, txt, "
            "webp, xls, xlsx")
        assert pg.get_by_label("Your reply").input_value() == "A program and a page."
        assert sent == []  # still nothing
    finally:
        context.close()


def test_past_the_submission_limit_the_form_keeps_what_was_typed(tmp_path, page):  # noqa: F811
    """Two tickets an hour from one address here; a mistake sent back does not count, the
    third ticket gets the friendly 429 with everything typed still in the form."""
    running = start_gateway(tmp_path, f"sqlite:///{tmp_path / 'data' / 'workestra.db'}", None,
                            {"WORKESTRA_LIMIT_SUBMIT": "2/hour"})
    try:
        def send(subject: str, email: str = "jane@customer.test") -> int:
            page.goto(f"{running.base_url}/portal/acme/submit")
            page.get_by_label("Name").fill("Jane Customer")
            page.get_by_label("Email").fill(email)
            page.get_by_label("Subject").fill(subject)
            page.get_by_label("Description").fill(f"About {subject}.")
            with page.expect_response(lambda r: r.request.method == "POST") as answer:
                page.get_by_role("button", name="Submit request").click()
            return answer.value.status

        assert send("First", email="not-an-address") == 400  # sent back: not counted
        assert page.get_by_label("Email").get_attribute("aria-invalid") == "true"
        for subject, ref in (("First", "TKT-0001"), ("Second", "TKT-0002")):
            assert send(subject) == 200
            page.get_by_text(ref).wait_for()
        assert send("Third") == 429
        assert page.get_by_role("alert").get_by_text("Please wait a little.").is_visible()
        assert page.get_by_label("Subject").input_value() == "Third"
        assert page.get_by_label("Description").input_value() == "About Third."
        assert page.get_by_label("Email").input_value() == "jane@customer.test"
        page.emulate_media(color_scheme="dark")
        page.screenshot(path=str(tmp_path / "rate_limited_dark.png"), full_page=True)
    finally:
        stop_gateway(running)
