"""The portal in a real headless Chromium, driven by labels as a customer would drive it."""

from __future__ import annotations

import http.server
import re
import threading
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
    page.get_by_role("button", name="Submit request").click()

    assert page.get_by_text("TKT-0001").is_visible()
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
        frame.get_by_role("button", name="Submit request").click()
        frame.get_by_text("TKT-0001").wait_for()
        assert frame.get_by_role("link", name="Track Ticket").get_attribute("target") == "_blank"
        page.screenshot(path=str(Path(tmp_path) / "widget.png"))
    finally:
        server.shutdown()
