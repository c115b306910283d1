"""The migrations build the schema the models declare, and the hot lookups use their indexes."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

import storage.models  # noqa: F401  (registers the tables)


def test_the_migrated_schema_matches_the_models(services):
    """A model change without its migration would pass every other test on a fresh database
    and break an existing one."""
    with services.store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    # the full-text search structures are declared only by migrations 0003 and 0005, on purpose
    search = ("kbarticle_fts", "search_vector", "search_title")
    assert [d for d in diff if not any(name in str(d) for name in search)] == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("column", ["message_id", "raw_sha256"])
def test_dedupe_lookups_do_not_walk_a_workspaces_mail(services, column):
    """SQLite plans these before any ANALYZE; with the workspace_id index alone it walked all
    of a workspace's mail for every message (22 ms a message at 100,000 of them, against
    4.8 ms)."""
    with services.store.engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.execute(text(
            "EXPLAIN QUERY PLAN SELECT id FROM inboundmessage WHERE workspace_id = 1 "
            f"AND {column} = 'x' AND state = 'done' AND id != 5 ORDER BY id LIMIT 1")))
    assert f"(workspace_id=? AND {column}=?)" in plan, plan


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_loop_brake_counts_from_the_index_alone(services):
    """Every automatic mail counts the address's last hour; reading each row was 14% of a
    portal submission's interpreter time (bench/portal.py, py-spy)."""
    with services.store.engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.execute(text(
            "EXPLAIN QUERY PLAN SELECT count(*) FROM (SELECT id FROM outboundmessage WHERE "
            "rcpt_to = 'a@b.test' AND automatic = 1 AND created_at >= '2026-01-01' LIMIT 120)")))
    assert "COVERING INDEX ix_outboundmessage_rcpt_recent" in plan, plan
