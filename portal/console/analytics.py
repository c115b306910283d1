"""Analytics for one workspace: tickets by channel and status, CSAT, KB deflection, and the
median first-response time.

Definitions, so the numbers mean the same to everyone:
- KB deflection rate = avoided / sessions, where a session is a distinct DeflectionEvent
  session_id with a `shown` event, and avoided = such sessions with no `submitted` event.
- First response = from the ticket's creation to its first public comment by an agent;
  tickets not answered yet are left out of the median.
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from portal.api_agent import CHANNELS
from portal.console.common import Ctx, console_page, render, services_of
from storage.models import STATUS_LABELS, Comment, CSATRating, DeflectionEvent, Ticket


@dataclass
class Figures:
    total: int = 0
    by_channel: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)
    csat_count: int = 0
    csat_average: float | None = None
    csat_distribution: dict[int, int] = field(default_factory=dict)
    deflection_sessions: int = 0
    deflection_avoided: int = 0
    first_response_count: int = 0
    first_response_median: timedelta | None = None

    @property
    def deflection_rate(self) -> float | None:
        if not self.deflection_sessions:
            return None
        return self.deflection_avoided / self.deflection_sessions


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; they were stored as UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def figures(s: Session, workspace_id: int) -> Figures:
    out = Figures()
    mine = Ticket.workspace_id == workspace_id
    channels = dict(s.exec(select(Ticket.channel, func.count()).where(mine)
                           .group_by(Ticket.channel)).all())
    out.by_channel = {c: channels.pop(c, 0) for c in CHANNELS} | channels
    statuses = dict(s.exec(select(Ticket.status, func.count()).where(mine)
                           .group_by(Ticket.status)).all())
    out.by_status = {st: statuses.pop(st, 0) for st in STATUS_LABELS} | statuses
    out.total = sum(out.by_channel.values())

    ratings = dict(s.exec(select(CSATRating.rating, func.count())
                          .join(Ticket, Ticket.id == CSATRating.ticket_id)  # type: ignore[arg-type]
                          .where(mine).group_by(CSATRating.rating)).all())
    out.csat_distribution = {r: ratings.get(r, 0) for r in range(1, 6)}
    out.csat_count = sum(out.csat_distribution.values())
    if out.csat_count:
        out.csat_average = sum(r * n for r, n in out.csat_distribution.items()) / out.csat_count

    in_ws = DeflectionEvent.workspace_id == workspace_id
    shown = select(DeflectionEvent.session_id).where(
        in_ws, DeflectionEvent.event == "shown").distinct()
    submitted = select(DeflectionEvent.session_id).where(
        in_ws, DeflectionEvent.event == "submitted")
    out.deflection_sessions = s.exec(select(func.count()).select_from(shown.subquery())).one()
    out.deflection_avoided = s.exec(select(func.count()).select_from(
        shown.where(DeflectionEvent.session_id.not_in(submitted)).subquery())).one()  # type: ignore[attr-defined]

    first = s.exec(select(Ticket.created_at, func.min(Comment.created_at))
                   .join(Comment, Comment.ticket_id == Ticket.id)  # type: ignore[arg-type]
                   .where(mine, Comment.author_kind == "agent",
                          Comment.internal == False)  # noqa: E712
                   .group_by(Ticket.id, Ticket.created_at)).all()
    waits = [(_aware(answered) - _aware(created)).total_seconds() for created, answered in first]
    out.first_response_count = len(waits)
    if waits:
        out.first_response_median = timedelta(seconds=statistics.median(waits))
    return out


def duration(value: timedelta | None) -> str:
    """"3 d 4 h", "2 h 5 min", "12 min", "40 s": two units at most, as people say it."""
    if value is None:
        return ""
    seconds = max(0, int(value.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


@console_page
async def analytics(request: Request, ctx: Ctx) -> Response:
    def load() -> Figures:
        with services_of(request).store.read() as s:
            return figures(s, ctx.workspace.id)  # type: ignore[arg-type]
    f = await asyncio.to_thread(load)
    return render(request, "console/analytics.html", ctx, nav="analytics", f=f,
                  first_response=duration(f.first_response_median),
                  status_rows=[(STATUS_LABELS.get(k, k), n) for k, n in f.by_status.items()],
                  csat_rows=[(f"{r} ★", f.csat_distribution[r]) for r in range(5, 0, -1)])


routes = [Route("/console/analytics", analytics, methods=["GET"])]
