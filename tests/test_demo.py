"""`serve --demo` seeds the acme workspace once, however often it starts."""

from sqlmodel import select

from gateway.demo import seed_demo
from storage.models import Agent, KBArticle, SupportAddress, Workspace


def test_demo_seed_is_idempotent_and_complete(services):
    seed_demo(services.store)  # the fixture seeded once already
    seed_demo(services.store)
    with services.store.tx() as s:
        [ws] = s.exec(select(Workspace)).all()
        agents = s.exec(select(Agent)).all()
        articles = s.exec(select(KBArticle)).all()
        addresses = s.exec(select(SupportAddress.address)).all()
    assert (ws.slug, ws.brand_name, ws.primary_color, ws.support_email) == (
        "acme", "Acme Support", "#7c3aed", "support@acme.test")
    assert ws.logo_url
    assert addresses == ["support@acme.test"]
    assert len(agents) == 2 and all(a.available for a in agents)
    assert "How to reset your password" in {a.title for a in articles if a.published}


def test_the_address_the_demo_shows_customers_is_one_the_gateway_takes(services):
    """Pages say "email us at" its support email: mail to it must become a ticket."""
    with services.store.tx() as s:
        ws = s.exec(select(Workspace)).one()
        assert ws.support_email in services.store.support_addresses(s, ws.id)


def test_a_demo_seeded_before_stops_showing_the_address_that_was_refused(services):
    with services.store.tx() as s:
        ws = s.exec(select(Workspace)).one()
        ws.support_email = "help@acme.test"
        s.add(ws)
    seed_demo(services.store)
    assert services.store.workspace_by_slug("acme").support_email == "support@acme.test"
    with services.store.tx() as s:  # one chosen since is left alone
        ws = s.exec(select(Workspace)).one()
        ws.support_email = "care@acme.test"
        s.add(ws)
    seed_demo(services.store)
    assert services.store.workspace_by_slug("acme").support_email == "care@acme.test"
