"""knowledge-base full-text search

SQLite: an external-content FTS5 table (porter stemmer, so plurals match) kept in step with
kbarticle by triggers. PostgreSQL: a generated, weighted English tsvector column with a GIN
index. The model does not declare either: only storage/search.py queries them.

Revision ID: 0003
Revises: 0002
"""
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

_SQLITE_UP = [
    "CREATE VIRTUAL TABLE kbarticle_fts USING fts5(title, body, content='kbarticle', "
    "content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER kbarticle_fts_ai AFTER INSERT ON kbarticle BEGIN "
    "INSERT INTO kbarticle_fts(rowid, title, body) VALUES (new.id, new.title, new.body); END",
    "CREATE TRIGGER kbarticle_fts_ad AFTER DELETE ON kbarticle BEGIN "
    "INSERT INTO kbarticle_fts(kbarticle_fts, rowid, title, body) "
    "VALUES ('delete', old.id, old.title, old.body); END",
    "CREATE TRIGGER kbarticle_fts_au AFTER UPDATE OF title, body ON kbarticle BEGIN "
    "INSERT INTO kbarticle_fts(kbarticle_fts, rowid, title, body) "
    "VALUES ('delete', old.id, old.title, old.body); "
    "INSERT INTO kbarticle_fts(rowid, title, body) VALUES (new.id, new.title, new.body); END",
    "INSERT INTO kbarticle_fts(kbarticle_fts) VALUES ('rebuild')",
]
_SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS kbarticle_fts_au",
    "DROP TRIGGER IF EXISTS kbarticle_fts_ad",
    "DROP TRIGGER IF EXISTS kbarticle_fts_ai",
    "DROP TABLE IF EXISTS kbarticle_fts",
]
_PG_UP = [
    "ALTER TABLE kbarticle ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('english', coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english', coalesce(body, '')), 'B')) STORED",
    "CREATE INDEX ix_kbarticle_search_vector ON kbarticle USING gin (search_vector)",
]
_PG_DOWN = [
    "DROP INDEX IF EXISTS ix_kbarticle_search_vector",
    "ALTER TABLE kbarticle DROP COLUMN IF EXISTS search_vector",
]


def _run(statements: list[str]) -> None:
    for sql in statements:
        op.execute(sql)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    _run(_PG_UP if dialect == "postgresql" else _SQLITE_UP)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    _run(_PG_DOWN if dialect == "postgresql" else _SQLITE_DOWN)
