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
        "acme", "Acme Support", "#7c3aed", "help@acme.test")
    assert ws.logo_url
    assert addresses == ["support@acme.test"]
    assert len(agents) == 2 and all(a.available for a in agents)
    assert "How to reset your password" in {a.title for a in articles if a.published}
