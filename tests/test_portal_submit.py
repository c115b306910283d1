"""The submit form as a customer meets it: fields, errors next to fields, nothing lost, tickets."""

from __future__ import annotations

import re

from sqlmodel import select

from storage.models import Attachment, OutboundMessage, Ticket
from tests.test_portal_common import PNG, client, csrf_of, submit


def test_form_has_a_label_for_every_field_and_the_four_types(services):
    html = client(services).get("/portal/acme/submit").text
    for field in ("name", "email", "type", "subject", "description", "attachments"):
        assert re.search(rf'<label for="{field}">', html), field
    for t in ("Support Request", "General Inquiry", "Bug Report", "Feature Request"):
        assert f"<option>{t}</option>" in html or f"<option selected>{t}</option>" in html
    assert "Acme Support" in html  # branded


def test_submission_opens_a_ticket_with_its_file_and_queues_the_confirmation(services):
    r = submit(client(services), files=[("attachments", ("shot.png", PNG, "image/png"))])
    assert r.status_code == 200
    ref = re.search(r"TKT-\d{4}", r.text).group(0)
    assert "Track Ticket" in r.text and "Submit Another" in r.text
    assert r.headers["referrer-policy"] == "no-referrer"  # the page links with a token
    with services.store.read() as s:
        ticket = s.exec(select(Ticket)).one()
        assert (ticket.reference, ticket.channel, ticket.type) == (ref, "portal", "Bug Report")
        files = s.exec(select(Attachment).where(Attachment.ticket_id == ticket.id)).all()
        assert [(f.filename, f.content_type) for f in files] == [("shot.png", "image/png")]
        kinds = {m.kind for m in s.exec(select(OutboundMessage))}
    assert "customer/ticket_received" in kinds


def test_errors_sit_next_to_their_fields_and_keep_what_was_typed(services):
    c = client(services)
    r = submit(c, {"name": "", "email": "not-an-address", "subject": "Kept subject",
                   "description": "Kept text"},
               files=[("attachments", ("shot.png", PNG, "image/png"))])
    assert r.status_code == 400
    assert 'id="name-error"' in r.text and 'id="email-error"' in r.text
    assert 'aria-describedby="email-error"' in r.text and 'aria-invalid="true"' in r.text
    assert 'value="Kept subject"' in r.text and "Kept text</textarea>" in r.text
    assert 'value="not-an-address"' in r.text
    assert "shot.png (attached)" in r.text  # the good file is kept for the next try
    token = re.search(r'name="upload" value="([^"]+)"', r.text).group(1)
    again = c.post("/portal/acme/submit", data={
        "csrf_token": csrf_of(r.text), "name": "Jane", "email": "jane@customer.test",
        "subject": "Kept subject", "description": "", "type": "Support Request",
        "upload": token}, files=[("x", ("", b""))])
    assert again.status_code == 200 and "TKT-0001" in again.text
    with services.store.read() as s:
        assert [a.filename for a in s.exec(select(Attachment))] == ["shot.png"]


def test_5001_characters_are_refused_and_5000_accepted(services):
    c = client(services)
    r = submit(c, {"description": "x" * 5001})
    assert r.status_code == 400 and 'id="description-error"' in r.text
    assert "5,000" in r.text and "x" * 5001 in r.text
    assert submit(c, {"description": "y" * 5000}).status_code == 200


def test_missing_or_wrong_csrf_is_refused_without_losing_the_form(services):
    c = client(services)
    c.get("/portal/acme/submit")
    r = c.post("/portal/acme/submit", data={"name": "Jane", "email": "jane@customer.test",
                                            "subject": "No token", "type": "Bug Report"},
               files=[("x", ("", b""))])
    assert r.status_code == 403 and "expired" in r.text and 'value="No token"' in r.text
    r = submit(c, {"csrf_token": "0" * 64})
    assert r.status_code == 403
    with services.store.read() as s:
        assert s.exec(select(Ticket)).all() == []


def test_honeypot_answers_politely_and_opens_nothing(services):
    r = submit(client(services), {"website": "http://spam.test"})
    assert r.status_code == 200 and "TKT-" not in r.text
    with services.store.read() as s:
        assert s.exec(select(Ticket)).all() == []


def test_unknown_workspace_is_a_neutral_404(services):
    r = client(services).get("/portal/nope/submit")
    assert r.status_code == 404 and "Page not found" in r.text and "Acme" not in r.text


def test_four_files_are_too_many(services):
    files = [("attachments", (f"s{i}.png", PNG, "image/png")) for i in range(4)]
    r = submit(client(services), files=files)
    assert r.status_code == 413 and "At most 3 files" in r.text


def test_embed_may_be_framed_by_anyone_other_pages_only_by_the_portal(services):
    c = client(services)
    normal = c.get("/portal/acme/submit")
    embed = c.get("/portal/acme/submit?embed=1")
    assert "frame-ancestors 'self'" in normal.headers["content-security-policy"]
    assert "frame-ancestors *" in embed.headers["content-security-policy"]
    assert '<header class="brand">' in normal.text and '<header class="brand">' not in embed.text
    assert c.get("/portal/acme/widget.js").headers["content-type"].startswith("text/javascript")


def test_embedded_form_from_our_own_origin_works_without_the_cookie(services):
    """In a frame on another site the browser withholds our cookie; Origin vouches instead."""
    c = client(services)
    html = c.get("/portal/acme/submit?embed=1").text
    c.cookies.clear()
    fields = {"csrf_token": csrf_of(html), "name": "Jane", "email": "jane@customer.test",
              "subject": "From a frame", "type": "Bug Report", "embed": "1"}
    ok = c.post("/portal/acme/submit?embed=1", data=fields, files=[("x", ("", b""))],
                headers={"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"})
    assert ok.status_code == 200 and "TKT-0001" in ok.text
    forged = c.post("/portal/acme/submit?embed=1", data=fields, files=[("x", ("", b""))],
                    headers={"Origin": "http://evil.test", "Sec-Fetch-Site": "cross-site"})
    assert forged.status_code == 403


def test_a_submission_is_scored_as_its_words_read(services):
    """Its sentiment is scored before the submission waits for the database, as mail's is
    inside it: the same text reads the same either way."""
    from gateway.sentiment import sentiment

    c = client(services)
    submit(c, {"subject": "Furious:   nothing works", "description": "This is awful, terrible "
                                                                  "service. I hate it."})
    submit(c, {"subject": "Thanks!", "description": "Great help, I love it."})
    with services.store.read() as s:
        scores = {t.subject: t.sentiment for t in s.exec(select(Ticket))}
    angry = sentiment("Furious: nothing works", "This is awful, terrible service. I hate it.")
    assert scores["Furious: nothing works"] == angry < 0
    assert scores["Thanks!"] > 0


def test_a_form_sent_back_again_and_again_keeps_no_more_files_than_the_upload_limit(services):
    """Each file kept for a form that comes back counts as an upload (5 per 10 minutes):
    sending a broken form with fresh files over and over cannot fill the disk."""
    c = client(services)
    blobs = services.blobs.root

    def stored() -> int:
        return sum(1 for p in blobs.rglob("*") if p.is_file())

    before = stored()
    pages = [submit(c, {"email": "not-an-address"},
                    files=[("attachments", (f"shot{i}.png", PNG + bytes([i]), "image/png"))])
             for i in range(7)]
    assert [p.status_code for p in pages] == [400] * 7
    assert stored() - before == 5  # the limit's five, not seven
    assert all(f"shot{i}.png (attached)" in pages[i].text for i in range(5))
    assert "shot5.png could not be kept for you" in pages[5].text
    assert "please attach it again" in pages[6].text
    assert "shot6.png (attached)" not in pages[6].text


def test_a_valid_form_stores_its_file_once_with_the_ticket_and_counts_no_upload(services):
    c = client(services)
    for i in range(7):  # more than the upload limit: sent forms do not count against it
        r = submit(c, files=[("attachments", (f"s{i}.png", PNG + bytes([i]), "image/png"))])
        assert r.status_code == 200, r.text
    with services.store.read() as s:
        assert sorted(a.filename for a in s.exec(select(Attachment))) == [
            f"s{i}.png" for i in range(7)]
