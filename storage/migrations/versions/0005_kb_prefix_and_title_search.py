"""knowledge-base search: prefix indexes (SQLite) and a title-only vector (PostgreSQL)

Suggestions are searched while the customer types, so the last word is a prefix. SQLite: the
FTS5 table gets prefix indexes for 2, 3 and 4 characters; without them a short prefix merged
the postings of every term it starts (bench/kb_search.py: p99 18 -> 10 ms). PostgreSQL: a
generated tsvector of the title alone with its GIN index, for storage/search.py's title-first
pass, so a common prefix is ranked over the titles that have it and not over every article.

Revision ID: 0005
Revises: 0004
"""
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def _fts(prefix: str) -> list[str]:
    """The FTS5 table again with other options; its triggers (0003) stay, bound by name."""
    return [
        "DROP TABLE kbarticle_fts",
        "CREATE VIRTUAL TABLE kbarticle_fts USING fts5(title, body, content='kbarticle', "
        f"content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'{prefix})",
        "INSERT INTO kbarticle_fts(kbarticle_fts) VALUES ('rebuild')",
    ]


_PG_UP = [
    "ALTER TABLE kbarticle ADD COLUMN search_title tsvector GENERATED ALWAYS AS ("
    "to_tsvector('english', coalesce(title, ''))) STORED",
    "CREATE INDEX ix_kbarticle_search_title ON kbarticle USING gin (search_title)",
]
_PG_DOWN = [
    "DROP INDEX IF EXISTS ix_kbarticle_search_title",
    "ALTER TABLE kbarticle DROP COLUMN IF EXISTS search_title",
]


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for sql in _PG_UP if postgres else _fts(", prefix='2 3 4'"):
        op.execute(sql)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for sql in _PG_DOWN if postgres else _fts(""):
        op.execute(sql)
