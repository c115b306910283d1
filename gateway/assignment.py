"""Who gets a new ticket: the workspace's assignment mode, decided under its row lock.

Every intake of a workspace passes through the lock on its row (the ticket counter bump takes
it and reads the assignment state under it: `Store.take_ticket_number`), so concurrent
intakes see each other's picks in commit order and round robin never hands two tickets to the
same agent while another waits. Away agents (`available = False`) are skipped in every mode.
"""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, select

from storage.models import Ticket
from storage.store import AgentRef, NumberTaken, Store

MODES = ("off", "round_robin", "least_open")
OPEN_STATUSES = ("open", "in_progress", "waiting")  # what counts as an agent's open load


def _after_last(agents: list[AgentRef], last_id: int | None) -> list[AgentRef]:
    """The agents in round-robin order: the one after the last pick first, wrapping around."""
    last = last_id or 0
    later = [a for a in agents if a.id > last]
    return later + [a for a in agents if a.id <= last]


def open_counts(s: Session, agent_ids: list[int]) -> dict[int, int]:
    """Open (not resolved or closed) tickets per agent."""
    if not agent_ids:
        return {}
    rows = s.exec(select(Ticket.assignee_id, func.count()).where(
        Ticket.assignee_id.in_(agent_ids),  # type: ignore[union-attr]
        Ticket.status.in_(OPEN_STATUSES),  # type: ignore[attr-defined]
    ).group_by(Ticket.assignee_id)).all()
    counts = dict.fromkeys(agent_ids, 0)
    counts.update({aid: n for aid, n in rows if aid is not None})
    return counts


def next_assignee(s: Session, store: Store, workspace_id: int,
                  taken: NumberTaken) -> AgentRef | None:
    """The agent the next ticket goes to (None when the mode is off or everyone is away).

    round_robin: the next available agent after the last one picked, by agent id.
    least_open: the available agent with the fewest open tickets; ties go round robin, so
    agents with equal load still take turns.
    `taken` must come from `Store.take_ticket_number` in this transaction: the workspace's
    row stays locked until it ends. The pick is recorded on that row.
    """
    if taken.assignment_mode not in ("round_robin", "least_open"):
        return None
    agents = store.available_agents(s, workspace_id)
    if not agents:
        return None
    order = _after_last(agents, taken.last_assigned_agent_id)
    if taken.assignment_mode == "least_open":
        counts = open_counts(s, [a.id for a in agents])
        fewest = min(counts.values())
        order = [a for a in order if counts[a.id] == fewest]
    pick = order[0]
    store.record_pick(s, workspace_id, pick.id)
    return pick
