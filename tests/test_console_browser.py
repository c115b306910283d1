"""The console in a real headless Chromium against a running gateway: an agent logs in, opens a
mailed ticket, replies with a file, sees the badge count a customer's reply live, resolves the
ticket, and reads the analytics."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from sqlmodel import select

from storage.models import Agent, Ticket
from tests.browser import browser, page  # noqa: F401
from tests.conftest import customer_mail, start_gateway, stop_gateway
from tests.test_agent_api import PNG

PASSWORD = "console password 1"
POLL_MS = 15_000  # portal/static/console.js: how often the badge asks for the count


def server_unread(pg, base: str) -> int:
    """The count the badge polls for, asked with the page's own session."""
    answer = pg.request.get(f"{base}/console/notifications/count",
                            headers={"Accept": "application/json"})
    assert answer.ok, answer.status
    return answer.json()["unread"]


@pytest.fixture
def running(tmp_path, sink):
    gw = start_gateway(tmp_path, f"sqlite:///{tmp_path / 'data' / 'workestra.db'}", sink.port)
    yield gw
    stop_gateway(gw)


def set_password(gw, email: str) -> None:
    """As an admin does it: `workestra agents password SLUG EMAIL`, the password on stdin."""
    done = subprocess.run([sys.executable, "-m", "gateway", "agents", "password", "acme", email],
                          input=PASSWORD + "\n", text=True, capture_output=True, env=gw.env,
                          cwd=gw.data_dir.parent, timeout=60)
    assert done.returncode == 0, done.stderr


def test_an_agent_works_a_ticket_in_the_browser(running, sink, page, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    running.send(customer_mail("Printer is on fire", "Room 4, again."),
                 "jane@customer.test", ["support@acme.test"])
    confirmation = sink.wait_for(lambda m: "TKT-0001" in str(m["Subject"]))
    svc = running.services()
    try:
        with svc.store.read() as s:
            ticket = s.exec(select(Ticket)).one()
            agent = s.get(Agent, ticket.assignee_id)
            agent_email = agent.email
    finally:
        svc.close()
    set_password(running, agent_email)  # the agent the ticket went to (round robin)

    base = running.base_url
    # Playwright's clock: time flows as usual, but the test may jump it ahead (the badge polls
    # every 15 s; the test need not sit through that)
    page.clock.install()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page.goto(f"{base}/console/tickets/TKT-0001")
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    page.get_by_label("Email").fill(agent_email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Printer is on fire")).to_be_visible()

    # the dashboard: the portal card's Copy Link button works (JS shows it)
    page.get_by_role("link", name="Dashboard").click()
    copy = page.get_by_role("button", name="Copy Link")
    expect(copy).to_be_visible()
    copy.click()
    expect(page.get_by_role("button", name="Copied!")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == f"{base}/portal/acme/submit"

    # the queue, then the ticket; reply with an attachment
    page.get_by_role("link", name="Tickets", exact=True).click()
    page.get_by_role("link", name="TKT-0001").click()
    shot = tmp_path / "screenshot.png"
    shot.write_bytes(PNG)
    page.get_by_label("Message").fill("We have sent a technician. Photo attached.")
    page.get_by_label("Attachments").set_input_files(str(shot))
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_have_text("Reply sent to the customer.")
    expect(page.locator("article.comment.agent").first).to_contain_text("sent a technician")
    expect(page.locator("article.comment.agent .chip")).to_contain_text("screenshot.png")
    reply_mail = sink.wait_for(lambda m: "sent a technician" in m.get_body(("plain",))
                               .get_content())
    assert "screenshot.png" in reply_mail.get_body(("plain",)).get_content()  # the mail names it

    # the customer answers by mail: the badge counts it without a reload
    badge = page.locator("#unread-badge")
    before = int(badge.inner_text())
    answer = customer_mail("Re: Printer is on fire", "Thanks, the technician is here.",
                           In_Reply_To=str(reply_mail["Message-ID"]),
                           References=f"{confirmation['Message-ID']} {reply_mail['Message-ID']}")
    page.evaluate("window.notReloaded = true")
    running.send(answer, "jane@customer.test", ["support@acme.test"])
    deadline = time.monotonic() + 30
    while server_unread(page, base) != before + 1:  # the gateway has taken the answer in
        assert time.monotonic() < deadline, "the customer's answer made no notification"
        time.sleep(0.1)
    page.clock.fast_forward(POLL_MS)  # the page's own poll timer comes due and fires
    expect(badge).to_have_text(str(before + 1))
    assert page.evaluate("window.notReloaded") is True  # the same document: no reload

    # resolve it
    page.get_by_label("Status").select_option("resolved")
    page.get_by_label("Resolution").fill("Technician replaced the fuser.")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#ticket-status")).to_have_text("Resolved")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.screenshot(path=str(tmp_path / "console-ticket.png"), full_page=True)
    print(f"\nscreenshot: {tmp_path / 'console-ticket.png'}")

    # analytics shows the numbers
    page.get_by_role("link", name="Analytics").click()
    expect(page.locator("#stat-total strong")).to_have_text("1")
    expect(page.locator("#stat-first-response strong")).not_to_have_text("—")
    expect(page.locator("#by-status")).to_contain_text("Resolved")

    # branding: the preview follows what the agent types
    page.get_by_role("link", name="Branding").click()
    page.get_by_label("Brand name").fill("Acme Care")
    page.get_by_label("Brand colour").fill("#0f766e")
    expect(page.locator("#preview-name")).to_have_text("Acme Care")
    assert page.locator("#preview-header").evaluate(
        "el => getComputedStyle(el).backgroundColor") == "rgb(15, 118, 110)"
