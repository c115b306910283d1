"""The store's hottest statements on the bare driver: rows they write read the same through
the ORM, and the ORM's rows compare the same in them, on SQLite (datetimes as text, booleans as
integers) and on PostgreSQL; driver errors arrive as SQLAlchemy's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import bindparam, exc, select
from sqlmodel import Session

from storage import bare
from storage.bare import Bare
from storage.models import Agent, Notification, OutboundMessage, Workspace, utcnow

_NOTIFICATIONS = Notification.__table__  # type: ignore[attr-defined]
_NOTE = bare.insert_of(_NOTIFICATIONS, ("workspace_id", "agent_id", "ticket_id", "kind", "text",
                                        "read", "created_at"), returning_id=True)
_UNREAD = Bare(select(_NOTIFICATIONS.c.id, _NOTIFICATIONS.c.read, _NOTIFICATIONS.c.created_at)
               .where(_NOTIFICATIONS.c.read == bindparam("read"),
                      _NOTIFICATIONS.c.created_at >= bindparam("since")))


def _demo(s: Session) -> tuple[int, int]:
    ws = s.exec(select(Workspace)).scalars().first()
    agent = s.exec(select(Agent).where(Agent.workspace_id == ws.id)).scalars().first()
    return ws.id, agent.id


def test_a_row_written_bare_reads_as_the_orm_would_have_written_it(services):
    """The same values, once through the ORM and once bare, read back alike both ways
    (SQLite keeps no time zone: both read back naive there, aware on PostgreSQL)."""
    store = services.store
    at = utcnow().replace(microsecond=123456)
    with store.tx() as s:
        ws, agent = _demo(s)
        values = {"workspace_id": ws, "agent_id": agent, "ticket_id": None, "kind": "bounce",
                  "text": "x", "read": False, "created_at": at}
        by_orm = Notification(**values)
        s.add(by_orm)
        s.flush()
        by_bare = bare.scalar(s, _NOTE, values)
    with store.read() as s:
        orm_rows = [s.get(Notification, i) for i in (by_orm.id, by_bare)]
        assert [(r.read, r.created_at, r.kind) for r in orm_rows] == [
            (False, orm_rows[0].created_at, "bounce")] * 2
        assert orm_rows[0].created_at.replace(tzinfo=None) == at.replace(tzinfo=None)
        found = {r.id: r for r in bare.rows(s, _UNREAD, {"read": False, "since": at})}
        assert (found[by_orm.id].read, found[by_orm.id].created_at) == (
            found[by_bare].read, found[by_bare].created_at) == (False, orm_rows[0].created_at)
        assert found[by_bare].read is False  # a bool, not SQLite's 0


def test_a_bare_comparison_matches_datetimes_the_orm_wrote(services):
    """The hourly cap on automatic mail counts what the ORM queued within the hour only."""
    store = services.store
    now = utcnow()
    with store.tx() as s:
        ws, _ = _demo(s)
        for minutes in (5, 59, 61, 180):
            s.add(OutboundMessage(workspace_id=ws, kind="ticket_received", automatic=True,
                                  message_id=f"m{minutes}@x", mail_from="support@acme.test",
                                  rcpt_to="jane@example.test", raw=b"x", state="sent",
                                  next_attempt_at=now,
                                  created_at=now - timedelta(minutes=minutes)))
    with store.tx() as s:
        assert store.automatic_mail_count(s, "Jane@Example.test", timedelta(hours=1), 10) == 2
        assert store.automatic_mail_count(s, "jane@example.test", timedelta(hours=1), 1) == 1


def test_a_driver_error_is_sqlalchemys_and_spoils_nothing_after_it(services):
    store = services.store
    with pytest.raises(exc.IntegrityError), store.tx() as s:
        ws, _ = _demo(s)
        bare.rows(s, _NOTE, {"workspace_id": ws, "agent_id": 999_999, "ticket_id": None,
                             "kind": "bounce", "text": "no such agent", "read": False,
                             "created_at": utcnow()})
    with store.tx() as s:  # the connection went back to the pool clean
        ws, agent = _demo(s)
        assert bare.scalar(s, _NOTE, {"workspace_id": ws, "agent_id": agent, "ticket_id": None,
                                      "kind": "bounce", "text": "fine", "read": True,
                                      "created_at": utcnow()}) is not None


def test_a_statement_that_expands_at_execution_is_refused_with_its_sql(services):
    ids = Bare(select(_NOTIFICATIONS.c.id)
               .where(_NOTIFICATIONS.c.id.in_(bindparam("ids", expanding=True))))
    with services.store.read() as s, pytest.raises(ValueError, match="expanding parameter"):
        bare.rows(s, ids, {"ids": [1, 2]})
