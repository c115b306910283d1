"""KB deflection: ranked full-text search on SQLite FTS5 and PostgreSQL, and its events."""

from __future__ import annotations

from sqlmodel import select

from portal.kb_search import deflection
from storage.models import DeflectionEvent, KBArticle, Workspace
from storage.search import search_articles
from tests.test_portal_common import client, submit


def _acme(services) -> int:
    return services.store.workspace_by_slug("acme").id


def titles(services, q):
    return [h.title for h in search_articles(services.engine, _acme(services), q)]


def test_plurals_word_order_and_ranking(services):
    assert titles(services, "reset password")[0] == "How to reset your password"
    assert titles(services, "passwords resetting")[0] == "How to reset your password"
    assert titles(services, "teammate invitations")[0] == "Inviting teammates"
    assert titles(services, "billing detail") == ["Updating your billing details"]
    assert titles(services, "expor")[0] == "Exporting your data"  # still typing
    assert titles(services, "zebra xylophone") == []
    assert titles(services, "   ") == []


def test_articles_whose_title_matches_come_first_and_the_rest_fill_the_list(services):
    ws = _acme(services)
    with services.store.tx() as s:
        s.add(KBArticle(workspace_id=ws, title="Toner cartridges", body="Which ones fit.",
                        published=True))
        for i in range(3):  # bodies that say it again and again, titles that do not
            s.add(KBArticle(workspace_id=ws, title=f"Office supplies {i}",
                            body="toner " * 40 + "and paper", published=True))
    found = titles(services, "tone")
    assert found[0] == "Toner cartridges"
    assert sorted(found[1:]) == ["Office supplies 0", "Office supplies 1", "Office supplies 2"]


def test_only_published_public_or_workspace_articles_of_this_workspace(services):
    ws = _acme(services)
    with services.store.tx() as s:
        other = Workspace(slug="other", name="Other")
        s.add(other)
        s.flush()
        s.add(KBArticle(workspace_id=ws, title="Printer draft", body="printer", published=False))
        s.add(KBArticle(workspace_id=ws, title="Printer internal", body="printer",
                        published=True, visibility="internal"))
        s.add(KBArticle(workspace_id=ws, title="Printer for staff", body="printer",
                        published=True, visibility="workspace"))
        s.add(KBArticle(workspace_id=other.id, title="Printer elsewhere", body="printer",
                        published=True))
    assert titles(services, "printers") == ["Printer for staff"]
    with services.store.tx() as s:  # edits reach the index (triggers / generated column)
        a = s.exec(select(KBArticle).where(KBArticle.title == "Printer for staff")).one()
        a.title, a.body = "Scanner setup", "scanner"
        s.add(a)
    assert titles(services, "printer") == [] and titles(services, "scanners") == ["Scanner setup"]


def test_at_most_five_suggestions(services):
    ws = _acme(services)
    with services.store.tx() as s:
        for i in range(8):
            s.add(KBArticle(workspace_id=ws, title=f"Router guide {i}", body="router",
                            published=True))
    assert len(titles(services, "routers")) == 5


def test_shown_clicked_dismissed_submitted_are_logged_and_give_a_rate(services):
    c = client(services)
    sid = "session-one-123"
    r = c.get("/api/public/kb/search", params={"slug": "acme", "q": "reset password",
                                                "session": sid})
    first = r.json()["articles"][0]
    assert first["title"] == "How to reset your password" and f"?s={sid}" in first["url"]
    c.get("/api/public/kb/search", params={"slug": "acme", "q": "reset passwords",
                                           "session": sid})
    assert "reset your password" in c.get(first["url"]).text  # opening it logs the click
    other = "session-two-456"
    c.get("/api/public/kb/search", params={"slug": "acme", "q": "billing", "session": other})
    assert c.post("/api/public/kb/events", json={"slug": "acme", "session": other,
                                                 "event": "dismissed"}).status_code == 204
    submit(c, {"dsid": other})
    with services.store.read() as s:
        events = sorted((e.session_id, e.event) for e in s.exec(select(DeflectionEvent)))
    shown_once = [e for e in events if e == (sid, "shown")]
    assert len(shown_once) == len({a["id"] for a in r.json()["articles"]})
    assert (sid, "clicked") in events and (other, "dismissed") in events
    assert (other, "submitted") in events
    d = deflection(services.engine, _acme(services))
    assert (d.sessions, d.avoided, d.rate) == (2, 1, 0.5)
    assert c.get("/api/public/kb/search?slug=nope&q=x").status_code == 404


def test_a_known_workspaces_missing_article_404_is_branded_an_unknown_slugs_is_not(services):
    c = client(services)
    with services.store.tx() as s:
        draft = KBArticle(workspace_id=_acme(services), title="Draft", body="Not yet.",
                          published=False)
        s.add(draft)
        s.flush()
        draft_id = draft.id
    for address in ("/portal/acme/kb/999", "/portal/acme/kb/abc", f"/portal/acme/kb/{draft_id}",
                    "/portal/acme/kb/99999999999999999999"):
        r = c.get(address)
        assert r.status_code == 404 and "Page not found" in r.text, address
        assert "Acme Support" in r.text and "#7c3aed" in r.text and "acme-logo.svg" in r.text
    r = c.get("/portal/nope/kb/1")
    assert r.status_code == 404 and "Page not found" in r.text
    assert "Acme" not in r.text and "7c3aed" not in r.text
