"""The CSAT survey: one rating per ticket, clear pages for bad links, seen by agents."""

from __future__ import annotations

import re

from sqlmodel import select

from gateway.intake import Person, TicketRequest
from gateway.tokens import feedback_token, tracking_token
from storage.models import CSATRating, Workspace
from tests.test_portal_common import client, csrf_of

SECRET = "test-secret-key-0123456789"


def _ticket(services, slug="acme"):
    with services.store.tx() as s:
        ws = s.exec(select(Workspace).where(Workspace.slug == slug)).one()
        t = services.intake.open_ticket(s, TicketRequest(
            workspace_id=ws.id, customer=Person("Jane", "jane@customer.test"),
            subject="Rate me", description="", channel="portal"))
        t.status = "resolved"
        s.add(t)
    return t


def test_rating_once_then_already_given(services):
    t = _ticket(services)
    c = client(services)
    url = f"/portal/acme/feedback?t={feedback_token(SECRET, t.id, 'jane@customer.test')}"
    page = c.get(url)
    assert page.status_code == 200 and page.headers["referrer-policy"] == "no-referrer"
    for n in range(1, 6):
        label = f"{n} star{'s' if n > 1 else ''}"
        assert re.search(rf'value="{n}".*{label}</span></label>', page.text)
    token = url.split("t=")[1]
    r = c.post("/portal/acme/feedback", data={"csrf_token": csrf_of(page.text), "t": token,
                                              "rating": "4", "comment": "Quick, thanks"})
    assert r.status_code == 200 and "Thank you for your feedback" in r.text
    again = c.get(url)
    assert "already rated" in again.text
    twice = c.post("/portal/acme/feedback", data={"csrf_token": csrf_of(page.text), "t": token,
                                                  "rating": "1"})
    assert "already rated" in twice.text
    with services.store.read() as s:
        ratings = s.exec(select(CSATRating)).all()
    assert [(x.rating, x.comment) for x in ratings] == [(4, "Quick, thanks")]


def test_missing_rating_and_csrf_are_errors(services):
    t = _ticket(services)
    c = client(services)
    token = feedback_token(SECRET, t.id, "jane@customer.test")
    page = c.get(f"/portal/acme/feedback?t={token}")
    r = c.post("/portal/acme/feedback", data={"csrf_token": csrf_of(page.text), "t": token})
    assert r.status_code == 400 and 'id="rating-error"' in r.text
    r = c.post("/portal/acme/feedback", data={"t": token, "rating": "5", "comment": "kept"})
    assert r.status_code == 400 and "expired" in r.text and "kept</textarea>" in r.text


def test_forged_tracking_and_other_workspace_links_get_a_clear_page(services):
    t = _ticket(services)
    c = client(services)
    for token in ("forged.token.here", tracking_token(SECRET, t.id, "jane@customer.test"),
                  feedback_token(SECRET, t.id, "someone@else.test")):
        r = c.get(f"/portal/acme/feedback?t={token}")
        assert r.status_code == 403 and "not valid" in r.text and "Acme Support" in r.text
    with services.store.tx() as s:
        s.add(Workspace(slug="other", name="Other"))
    r = c.get(f"/portal/other/feedback?t={feedback_token(SECRET, t.id, 'jane@customer.test')}")
    assert r.status_code == 403


def test_expired_link_gets_the_clear_page(services):
    import time

    from itsdangerous import URLSafeTimedSerializer
    from itsdangerous.timed import TimestampSigner

    class EightDaysAgo(TimestampSigner):
        def get_timestamp(self):
            return int(time.time()) - 8 * 24 * 3600

    t = _ticket(services)
    token = URLSafeTimedSerializer(SECRET, salt="workestra.feedback.v1",
                                   signer=EightDaysAgo).dumps([t.id, "jane@customer.test"])
    r = client(services).get(f"/portal/acme/feedback?t={token}")
    assert r.status_code == 403 and "7 days" in r.text
