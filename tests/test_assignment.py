"""Auto-assignment: round robin skips away agents, least_open balances load, off assigns nobody,
and concurrent intake on PostgreSQL keeps the round-robin order."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlmodel import select

from gateway.demo import seed_demo
from gateway.intake import Person, TicketRequest
from gateway.services import build_services
from storage.models import Agent, Ticket, Workspace
from tests.conftest import make_settings


def _acme(services) -> Workspace:
    return services.store.workspace_by_slug("acme")


def _set(services, *, mode: str | None = None, away: tuple[str, ...] = (),
         add: tuple[str, ...] = ()) -> dict[str, int]:
    """Configure acme; return agent ids by email."""
    with services.store.tx() as s:
        ws = s.get(Workspace, _acme(services).id)
        if mode:
            ws.assignment_mode = mode
            s.add(ws)
        for email in add:
            s.add(Agent(workspace_id=ws.id, name=email.split("@")[0].title(), email=email))
        s.flush()
        agents = services.store.agents(s, ws.id)
        for a in agents:
            a.available = a.email not in away
            s.add(a)
        return {a.email: a.id for a in agents}


def _open(services, n: int = 1, subject: str = "Help") -> list[Ticket]:
    out = []
    for i in range(n):
        with services.store.tx() as s:
            out.append(services.intake.open_ticket(s, TicketRequest(
                workspace_id=_acme(services).id,
                customer=Person("Jane", f"jane{i}@customer.test"),
                subject=f"{subject} {i}", description="Please help.", channel="portal")))
    return out


def test_round_robin_takes_turns_and_skips_away_agents(services):
    ids = _set(services, add=("kim@acme.test",), away=("sam@acme.test",))
    tickets = _open(services, 4)
    assert [t.assignee_id for t in tickets] == [ids["alex@acme.test"], ids["kim@acme.test"]] * 2
    ids = _set(services)  # Sam is back: the turn wraps from Kim to Alex, then Sam, then Kim
    assert [t.assignee_id for t in _open(services, 3)] == [
        ids["alex@acme.test"], ids["sam@acme.test"], ids["kim@acme.test"]]


def test_least_open_gives_the_ticket_to_the_agent_with_fewest_open(services):
    ids = _set(services, mode="round_robin")
    first = _open(services, 4)  # alex, sam, alex, sam
    with services.store.tx() as s:  # Sam resolves both of theirs; Alex keeps two open
        for t in first:
            row = s.get(Ticket, t.id)
            if row.assignee_id == ids["sam@acme.test"]:
                row.status = "resolved"
                s.add(row)
    _set(services, mode="least_open")
    nxt = _open(services, 4)
    alex, sam = ids["alex@acme.test"], ids["sam@acme.test"]
    # Sam has 0 open, Alex 2: Sam gets two; then they are level and take turns.
    assert [t.assignee_id for t in nxt] == [sam, sam, alex, sam]


def test_least_open_skips_away_agents_and_off_assigns_nobody(services):
    ids = _set(services, mode="least_open", away=("alex@acme.test",))
    assert {t.assignee_id for t in _open(services, 3)} == {ids["sam@acme.test"]}
    _set(services, mode="off")
    assert [t.assignee_id for t in _open(services, 2)] == [None, None]
    _set(services, mode="round_robin", away=("alex@acme.test", "sam@acme.test"))
    assert [t.assignee_id for t in _open(services, 1)] == [None]


def test_everyone_away_gets_no_notification_mail(services):
    _set(services, away=("alex@acme.test", "sam@acme.test"))
    [t] = _open(services)
    assert [m.kind for m in services.store.outbox(ticket_id=t.id)] == ["customer/ticket_received"]


def test_concurrent_intake_on_postgres_keeps_a_fair_round_robin(tmp_path, postgres_url):
    svc = build_services(make_settings(tmp_path, postgres_url))
    try:
        seed_demo(svc.store)
        ids = _set(svc, add=("kim@acme.test",))
        ws_id = _acme(svc).id

        def one(i: int) -> int:
            with svc.store.tx() as s:
                t = svc.intake.open_ticket(s, TicketRequest(
                    workspace_id=ws_id, customer=Person("C", f"c{i}@customer.test"),
                    subject=f"Parallel {i}", description="x", channel="portal"))
                return t.id

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, range(24)))
        with svc.store.read() as s:
            rows = list(s.exec(select(Ticket).where(Ticket.workspace_id == ws_id)
                               .order_by(Ticket.number)))
        order = [ids["alex@acme.test"], ids["sam@acme.test"], ids["kim@acme.test"]]
        assert len(rows) == 24
        # In number order (the order the workspace lock granted), the agents strictly rotate.
        assert [t.assignee_id for t in rows] == order * 8
    finally:
        svc.close()
