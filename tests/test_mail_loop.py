"""The whole loop over real SMTP and HTTP: mail in, confirmation out, tracking page, reply back."""

from __future__ import annotations

import re
import time
from email.message import EmailMessage

import httpx

from tests.conftest import customer_mail


def plain(msg: EmailMessage) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()


def tracking_link(gateway, msg: EmailMessage, ref: str) -> str:
    found = re.findall(re.escape(gateway.base_url) + rf"/portal/acme/tickets/{ref}\?t=[\w.\-]+",
                       plain(msg))
    assert found, plain(msg)
    return found[0]


def wait_page(client: httpx.Client, url: str, needle: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = client.get(url).text
        if needle in text:
            return text
        time.sleep(0.1)
    raise AssertionError(f"{needle!r} never appeared on {url}")


def test_mail_to_ticket_to_tracking_page_to_threaded_reply(gateway, sink):
    first = customer_mail("Printer is on fire", "Hello,\n\nThe printer in room 4 is on fire "
                          "again.\n\nJane\n")
    gateway.send(first, "jane@customer.test", ["support@acme.test"])

    conf = sink.wait_for(lambda m: "jane@customer.test" in str(m["To"]))
    assert str(conf["Subject"]) == "[TKT-0001] Printer is on fire"
    assert conf["In-Reply-To"] == first["Message-ID"]  # sits in the customer's own thread
    assert conf["Auto-Submitted"] == "auto-replied"
    assert "Acme Support" in str(conf["From"]) and "support@acme.test" in str(conf["From"])
    assert conf.get_body(preferencelist=("html",)) is not None
    link = tracking_link(gateway, conf, "TKT-0001")

    browser = httpx.Client(follow_redirects=True)  # keeps cookies, as a browser does
    page = browser.get(link)
    assert page.status_code == 200
    assert "TKT-0001" in page.text and "on fire again" in page.text
    assert re.search(r">\s*Open\s*<", page.text)
    # The token was swapped for a cookie and left the address bar; it never leaks onward.
    assert "?t=" not in str(page.url) and page.history[0].status_code == 303
    assert page.history[0].headers["referrer-policy"] == "no-referrer"

    # The assignee hears about it too.
    note = sink.wait_for(lambda m: "@acme.test" in str(m["To"]) and "assigned" in str(m["Subject"]))
    assert "TKT-0001" in str(note["Subject"])

    reply = customer_mail("Re: " + str(conf["Subject"]),
                          "It is still burning, please hurry.\n\nOn Tue, Acme Support wrote:\n"
                          + "\n".join("> " + line for line in plain(conf).splitlines()) + "\n",
                          to=str(conf["Reply-To"]), In_Reply_To=conf["Message-ID"],
                          References=conf["Message-ID"])
    reply_address = conf["Reply-To"].addresses[0].addr_spec
    gateway.send(reply, "jane@customer.test", [reply_address])

    page = wait_page(browser, str(page.url), "still burning")
    assert page.count("The printer in room 4") == 1
    assert "&gt; " not in page and "Thank you for contacting" not in page
    time.sleep(0.5)
    refs = {r for m in sink.messages for r in re.findall(r"TKT-\d{4}", str(m["Subject"]))}
    assert refs == {"TKT-0001"}  # the reply opened no second ticket


def test_tracking_page_reveals_nothing_without_the_right_token(gateway, sink):
    gateway.send(customer_mail("Secret plans", "The vault code is 1234."),
                 "jane@customer.test", ["support@acme.test"])
    gateway.send(customer_mail("My own issue", "Hello", sender="Bob <bob@other.test>"),
                 "bob@other.test", ["support@acme.test"])
    jane = sink.wait_for(lambda m: "jane@customer.test" in str(m["To"]))
    bob = sink.wait_for(lambda m: "bob@other.test" in str(m["To"]))
    jane_ref = re.search(r"TKT-\d{4}", str(jane["Subject"])).group()
    bob_link = tracking_link(gateway, bob, re.search(r"TKT-\d{4}", str(bob["Subject"])).group())
    bob_token = bob_link.split("?t=")[1]
    base = f"{gateway.base_url}/portal/acme/tickets/{jane_ref}"

    client = httpx.Client()  # one cookie jar, so the pages' CSRF fields compare equal
    for url in (base, f"{base}?t=forged", f"{base}?t={bob_token}",
                f"{base}?t={bob_token[:-3]}abc"):
        r = client.get(url)
        assert r.status_code == 403, url
        assert "vault code" not in r.text and "Secret plans" not in r.text
        assert "Email me a fresh link" in r.text

    unknown = client.get(f"{gateway.base_url}/portal/acme/tickets/TKT-9999?t=forged")
    known = client.get(f"{base}?t=forged")
    assert unknown.status_code == known.status_code  # existence is not revealed
    assert unknown.text.replace("TKT-9999", jane_ref) == known.text


def test_fresh_link_goes_only_to_the_address_on_the_ticket(gateway, sink):
    gateway.send(customer_mail("Lost my link", "Hi"), "jane@customer.test", ["support@acme.test"])
    conf = sink.wait_for(lambda m: "jane@customer.test" in str(m["To"]))
    ref = re.search(r"TKT-\d{4}", str(conf["Subject"])).group()
    client = httpx.Client()

    def ask(r: str) -> str:
        form = client.get(f"{gateway.base_url}/portal/acme/tickets/{r}").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
        return client.post(f"{gateway.base_url}/portal/acme/tickets/{r}/link",
                           data={"csrf_token": token}).text

    answers = [ask(r) for r in (ref, "TKT-0999")]
    assert answers[0].replace(ref, "X") == answers[1].replace("TKT-0999", "X")
    fresh = sink.wait_for(lambda m: "tracking link" in str(m["Subject"]))
    assert "jane@customer.test" in str(fresh["To"])
    link = tracking_link(gateway, fresh, ref)
    assert "Lost my link" in httpx.get(link, follow_redirects=True).text
    for _ in range(3):  # asking again within 10 minutes sends nothing more
        ask(ref)
    time.sleep(1)
    assert len([m for m in sink.messages if "tracking link" in str(m["Subject"])]) == 1


def test_unknown_workspace_is_a_plain_404(gateway):
    r = httpx.get(f"{gateway.base_url}/portal/nope/tickets/TKT-0001?t=x")
    assert r.status_code == 404 and "Page not found" in r.text
    r = httpx.get(f"{gateway.base_url}/portal/acme/tickets/%3Cb%3Ehello%3C%2Fb%3E")
    assert r.status_code == 404 and "hello" not in r.text  # not a reference: nothing echoed
