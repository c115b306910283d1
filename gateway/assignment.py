"""Who gets a new ticket: the workspace's assignment mode, decided under its row lock.

Every intake of a workspace passes through the lock on its row (the ticket counter bump takes
it; `lock_workspace` reads the row fresh under it), so concurrent intakes see each
other's picks in commit order and round robin never hands two tickets to the same agent while
another waits. Away agents (`available = False`) are skipped in every mode.
"""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, select

from storage.models import Agent, Ticket, Workspace

MODES = ("off", "round_robin", "least_open")
OPEN_STATUSES = ("open", "in_progress", "waiting")  # what counts as an agent's open load


def lock_workspace(s: Session, workspace_id: int) -> Workspace:
    """The workspace row, freshly read and locked until the transaction ends.

    FOR NO KEY UPDATE, not FOR UPDATE: a transaction that has only inserted rows referring to
    the workspace holds KEY SHARE on it, and FOR UPDATE would wait for that one while it
    waits for our counter bump: a deadlock (found under load by bench/soak.py). On SQLite the
    BEGIN IMMEDIATE transaction already holds the database's write lock.
    """
    q = (select(Workspace).where(Workspace.id == workspace_id)
         .with_for_update(key_share=True).execution_options(populate_existing=True))
    return s.exec(q).one()


def _after_last(agents: list[Agent], last_id: int | None) -> list[Agent]:
    """The agents in round-robin order: the one after the last pick first, wrapping around."""
    last = last_id or 0
    later = [a for a in agents if a.id > last]  # type: ignore[operator]
    return later + [a for a in agents if a.id <= last]  # type: ignore[operator]


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


def next_assignee(s: Session, ws: Workspace) -> Agent | None:
    """The agent the next ticket goes to (None when the mode is off or everyone is away).

    round_robin: the next available agent after the last one picked, by agent id.
    least_open: the available agent with the fewest open tickets; ties go round robin, so
    agents with equal load still take turns.
    `ws` must come from `lock_workspace` in this transaction. The pick is recorded on it.
    """
    if ws.assignment_mode not in ("round_robin", "least_open"):
        return None
    agents = list(s.exec(select(Agent).where(Agent.workspace_id == ws.id, Agent.available)
                         .order_by(Agent.id)))
    if not agents:
        return None
    order = _after_last(agents, ws.last_assigned_agent_id)
    if ws.assignment_mode == "least_open":
        counts = open_counts(s, [a.id for a in agents])  # type: ignore[misc]
        fewest = min(counts.values())
        order = [a for a in order if counts[a.id] == fewest]  # type: ignore[index]
    pick = order[0]
    ws.last_assigned_agent_id = pick.id
    s.add(ws)
    return pick
