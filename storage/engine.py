"""Makes the database engine: a SQLite file by default, PostgreSQL from DATABASE_URL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

READ_ONLY = "workestra_read_only"


def make_engine(url: str) -> Engine:
    """An engine tuned for its backend: SQLite gets WAL, durable commits, early write locks."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    # Enough pooled connections for every thread that reads at once (the portal's thread pool,
    # the spool, the processor): past the pool's size each one would be closed on return and
    # opened again, WAL pragmas and all, on the next request.
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                           pool_size=20, max_overflow=20)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own is deferred).
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")  # a committed row survives power loss
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        # Writers take the lock at BEGIN: a deferred transaction that reads and then writes can
        # fail with SQLITE_BUSY instead of waiting, which would lose a concurrent intake.
        # Read-only work (READ_ONLY below) stays deferred so pages never queue behind a writer.
        read_only = conn.get_execution_options().get(READ_ONLY)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def set_busy_timeout(conn: Connection, ms: int) -> None:
    """SQLite: how long this connection waits for a lock. Set on the driver's connection
    itself: through SQLAlchemy it would begin a transaction."""
    conn.connection.driver_connection.execute(f"PRAGMA busy_timeout={ms}")  # type: ignore


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"
